"""The paper's figures from per-run metrics and sampler stats (PNG, matplotlib): Fig. 2 (size vs FID),
Fig. 4 (throughput vs FID: the dedicated timing jobs' images/s, mean ± SD over their repeats, where a row
has them, else the sampling jobs' own rate), Fig. 5 (FID during fine-tuning, TensorAR vs the equal-steps
control) and a grid of samples of every Table 2 run."""
from __future__ import annotations

import numpy as np

from tensorar.fileio import atomic_path, read_finite_json
from tensorar.reporting.tables import (
    FALLBACK_MARK,
    aggregate,
    is_toy,
    read_json,
    row_throughput,
)


def _save(fig, path: str) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def write_figures(manifest: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prov, outputs = manifest["provenance"], manifest["outputs"]
    fid = "toy-FID" if is_toy(prov) else "FID"
    # method -> [(parameters, throughput, its SD, FID, label, throughput source)]
    by_method: dict[str, list[tuple[float, float, float, float, str, str]]] = {}
    for row in manifest["table2"]:
        if "runs" not in row:  # pending rows
            continue
        mean = aggregate([read_finite_json(r["metrics"])["fid"] for r in row["runs"]])[0]
        stats = [read_json(r["stats"]) for r in row["runs"]]
        rate, rate_std, source = row_throughput(row["runs"], stats)
        params = stats[0]["model"]["parameters"]
        by_method.setdefault(row["method"], []).append((params, rate, rate_std, mean, row["cells"]["Model"], source))
    sources = {p[5] for points in by_method.values() for p in points}
    rate_label = ("throughput (images/s, generation + VQ decoding; timing jobs, mean ± SD over repeats)"
                  if sources == {"timing"}
                  else "generation throughput (images/s; the sampling jobs' own clock)" if sources <= {"sampler"}
                  else f"generation throughput (images/s; timing jobs, or{FALLBACK_MARK}: sampling jobs)")

    for key, xlabel, index in (("fig2", "parameters", 0), ("fig4", rate_label, 1)):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for method, points in by_method.items():
            (line,) = ax.plot([p[index] for p in points], [p[3] for p in points], "o-", label=method)
            # SD error bars of the timed rows only (a fallback row's rate is the sampling jobs', as before).
            timed = [p for p in points if p[5] == "timing" and np.isfinite(p[2])]
            if key == "fig4" and timed:
                ax.errorbar([p[1] for p in timed], [p[3] for p in timed], xerr=[p[2] for p in timed], fmt="none",
                            ecolor=line.get_color(), capsize=3)
            for p in points:
                mark = FALLBACK_MARK if key == "fig4" and len(sources) > 1 and p[5] == "sampler" else ""
                ax.annotate(p[4] + mark, (p[index], p[3]), fontsize=7)
        ax.set_xscale("log")
        ax.set(xlabel=xlabel, ylabel=fid, title=f"{'Fig. 2: size' if key == 'fig2' else 'Fig. 4: throughput'} vs {fid}")
        ax.legend(fontsize=8)
        _save(fig, outputs[key])

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, points in manifest["fig5"]["curves"].items():
        steps = [p["step"] for p in points]
        stats = [aggregate([read_finite_json(r["metrics"])["fid"] for r in p["runs"]]) for p in points]
        means, stds = np.array([s[0] for s in stats]), np.nan_to_num([s[1] for s in stats])
        ax.errorbar(steps, means, yerr=stds, marker="o", capsize=3, label=label)
    ax.set(xlabel="fine-tuning step", ylabel=fid, title=f"Fig. 5: training {fid}, {manifest['fig5']['backbone']}")
    ax.legend(fontsize=8)
    _save(fig, outputs["fig5"])

    grids = manifest["grids"]
    fig, axes = plt.subplots(1, len(grids), figsize=(3 * len(grids), 3.4), squeeze=False)
    for ax, grid in zip(axes[0], grids):
        ax.imshow(plt.imread(grid["png"][0]))
        ax.set_title(grid["label"], fontsize=8)
        ax.axis("off")
    _save(fig, outputs["grid"])
