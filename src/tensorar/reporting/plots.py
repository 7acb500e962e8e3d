"""The paper's figures from per-run metrics and sampler stats (PNG, matplotlib): Fig. 2 (size vs FID),
Fig. 4 (throughput vs FID), Fig. 5 (FID during fine-tuning, TensorAR vs the equal-steps control) and a
grid of samples of every Table 2 run."""
from __future__ import annotations

import math

import numpy as np

from tensorar.fileio import atomic_path
from tensorar.reporting.tables import aggregate, is_toy, read_json


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
    by_method: dict[str, list[tuple[float, float, float, str]]] = {}
    for row in manifest["table2"]:
        if "runs" not in row:  # pending rows
            continue
        mean = aggregate([read_json(r["metrics"])["fid"] for r in row["runs"]])[0]
        stats = [read_json(r["stats"]) for r in row["runs"]]
        rate = aggregate([s["generate_images_per_s"] or math.nan for s in stats])[0]
        params = stats[0]["model"]["parameters"]
        by_method.setdefault(row["method"], []).append((params, rate, mean, row["cells"]["Model"]))

    for key, xlabel, index in (("fig2", "parameters", 0), ("fig4", "generation throughput (images/s)", 1)):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for method, points in by_method.items():
            ax.plot([p[index] for p in points], [p[2] for p in points], "o-", label=method)
            for p in points:
                ax.annotate(p[3], (p[index], p[2]), fontsize=7)
        ax.set_xscale("log")
        ax.set(xlabel=xlabel, ylabel=fid, title=f"{'Fig. 2: size' if key == 'fig2' else 'Fig. 4: throughput'} vs {fid}")
        ax.legend(fontsize=8)
        _save(fig, outputs[key])

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, points in manifest["fig5"]["curves"].items():
        steps = [p["step"] for p in points]
        stats = [aggregate([read_json(r["metrics"])["fid"] for r in p["runs"]]) for p in points]
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
