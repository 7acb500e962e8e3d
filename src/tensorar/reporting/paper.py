"""Published numbers of the TensorAR paper, shown beside ours in results/tableN.md.

Keys are `"<table>/<row key>"` as built by the workflow (workflow/rules/common.smk), values map a metric
name of METRICS.json (`fid`, `inception_score`, `precision`, `recall`) to the paper's number.

The paper's tables were not looked up for this release (the full text was not reachable from the tools
used to build it), so the mapping is empty and every paper column reads NOT_LOOKED_UP. Numbers may only
be added here copied from the paper (arXiv:2505.16324), with the table they come from; never estimated.
"""
from __future__ import annotations

NOT_LOOKED_UP = "n/a (not looked up)"
NOT_IN_PAPER = "n/a (not in paper)"

PAPER_VALUES: dict[str, dict[str, float]] = {}


def paper_value(key: str, metric: str, toy: bool) -> float | str:
    """The paper's `metric` for row `key`, or why there is none (toy rows are never in the paper)."""
    if toy:
        return NOT_IN_PAPER
    return PAPER_VALUES.get(key, {}).get(metric, NOT_LOOKED_UP)
