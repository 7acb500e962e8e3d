"""results/diagnostics.md: the draft-copying diagnostics of every TensorAR run (`tensorar diagnose`), and
the draft-noise sampling rows (ours, not the paper's)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from tensorar.fileio import atomic_path, atomic_write_text, read_finite_json
from tensorar.reporting.tables import (
    aggregate,
    fmt,
    is_toy,
    provenance_lines,
    read_json,
)


def flatten(d: dict, prefix: str = "") -> dict:
    """Scalar leaves of a nested dict as dotted keys (lists and strings are left out of the table)."""
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        elif isinstance(value, (bool, int, float)) and not isinstance(value, str):
            out[f"{prefix}{key}"] = float(value)
    return out


def write_diagnostics(manifest: dict, out: Path) -> None:
    prov = manifest["provenance"]
    fid = "toy-FID" if is_toy(prov) else "FID"
    rows = []
    for row in manifest["diagnostics"]:
        per_seed = [flatten(read_json(run["diagnostics"])) for run in row["runs"]]
        cells = {"Run": row["label"]}
        for key in per_seed[0]:
            if key.endswith("seed") or "_config." in key:  # settings echoed back; the label names them
                continue
            values = [d[key] for d in per_seed if key in d]
            count = key.split(".")[-1].startswith("num_")  # num_items, num_samples: no decimals
            cells[key] = fmt(*aggregate(values)[:2], 0 if count else 4)
        rows.append(cells)
    noise_rows = []
    for row in manifest["draft_noise"]:
        ours = aggregate([read_finite_json(run["metrics"])["fid"] for run in row["runs"]])
        reference = aggregate([read_finite_json(run["metrics"])["fid"] for run in row["reference"]])
        noise_rows.append({"Run": row["label"], f"{fid} (draft_noise: schedule)": fmt(*ours[:2]),
                           f"{fid} (draft_noise: none)": fmt(*reference[:2])})
    diag, noise = pd.DataFrame(rows).fillna(""), pd.DataFrame(noise_rows)
    text = ["# Draft-copying diagnostics of every TensorAR run", "", *provenance_lines(prov), "",
            "Columns come from `tensorar diagnose` (held-out codes); see its docstring for each quantity.", "",
            diag.to_markdown(index=False, disable_numparse=True), "",
            "## Sampling with noised drafts (not from the paper)", "",
            "Each Table 2 TensorAR model sampled again with `--draft-noise schedule` (drafts re-noised with the "
            "training schedule before being fed back); an extra diagnostic row, not a result of the paper.", "",
            noise.to_markdown(index=False, disable_numparse=True), ""]
    atomic_write_text(out, "\n".join(text))
    with atomic_path(out.with_suffix(".csv")) as tmp:
        pd.concat([diag.assign(section="diagnostics"), noise.assign(section="draft_noise")]).to_csv(tmp, index=False)
