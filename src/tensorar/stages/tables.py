"""Assemble the result tables (Markdown + CSV) and figures (PNG) from per-run metrics files.

    python -m tensorar.tables table --manifest JSON --out results/table2.md      (+ results/table2.csv)
    python -m tensorar.tables diagnostics --manifest JSON --out results/diagnostics.md
    python -m tensorar.tables figures --manifest JSON                              (paths in the manifest)

The manifest (built by workflow/rules/common.smk) says which METRICS.json / sampler stats / checkpoint
files make each row, so this module knows nothing about the workflow's folder layout. Values are
reported as they come: mean ± sample std over seeds when there are several, never filtered or tuned.
Each Markdown file starts with a provenance header (config hash, git commit, date, dataset, feature
network, seeds); the paper's published values (tensorar.paper_values) sit beside ours.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from tensorar.fileio import atomic_path, atomic_write_text
from tensorar.paper_values import paper_value

# METRICS.json key -> column name. The paper reports FID / IS / precision / recall; sFID is ours only.
METRICS = {"fid": "FID", "inception_score": "IS", "precision": "Precision", "recall": "Recall"}
OURS_ONLY = {"sfid": "sFID"}


# --------------------------------------------------------------------------------------------------
# Reading runs
# --------------------------------------------------------------------------------------------------
def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def aggregate(values: list[float]) -> tuple[float, float, int]:
    """mean, sample std (nan for one value), count."""
    arr = np.asarray(values, dtype=float)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else math.nan
    return float(arr.mean()), std, len(arr)


def fmt(mean: float, std: float, digits: int = 2) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def count_parameters(ckpt: str | Path) -> int:
    """Parameters of a checkpoint's model (ours: `model` state dict; official LlamaGen: `model` or flat).

    Memory-mapped, so reading a multi-GB checkpoint for its tensor shapes costs no RAM.
    """
    import torch

    state = torch.load(ckpt, map_location="cpu", mmap=True, weights_only=False)
    state = state.get("model", state)
    return sum(t.numel() for t in state.values() if hasattr(t, "numel"))


LATENCY_NOTE = (
    "Latency: generation time per image (VQ decoding excluded) as the sampling job measured it, while the "
    "workflow may have run other jobs on the same machine: rows of one run can differ by this alone "
    "(ours; `benchmarks/sampling.py` times the samplers in isolation)."
)


def latency_ms(stats: dict) -> float:
    """Milliseconds of generation per image (decode excluded), from the sampler's stats JSON."""
    rate = stats.get("generate_images_per_s")
    return 1000.0 / rate if rate else math.nan


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------
def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def provenance_lines(prov: dict) -> list[str]:
    seeds = prov["seeds"]
    spread = f"mean ± sample std over {len(seeds)} seeds" if len(seeds) > 1 else "one seed (no spread)"
    return [
        f"- config hash: `{prov['config_hash']}` (experiment `{prov['experiment']}`), git commit: "
        f"`{git_commit()}`, generated: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- dataset: {prov['dataset']}; feature network: {prov['feature_network']}",
        f"- seeds: {seeds} ({spread}); samples per model: {prov['num_samples']}",
    ]


def is_toy(prov: dict) -> bool:
    return prov["dataset"] == "digits"


def section_frame(section: dict, toy: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(Markdown frame of formatted cells, CSV frame of raw numbers) of one table section."""
    fid_name = "toy-FID" if toy else "FID"
    shown, raw = [], []
    for row in section["rows"]:
        # Integer cells (e.g. resolution) as text, so pending rows' blanks don't turn them into floats.
        cells = {k: str(v) if isinstance(v, int) else v for k, v in row["cells"].items()}
        numbers = dict(row["cells"])
        if "pending" in row:
            note = f"pending ({row['pending']})"
            if "params" in row:
                cells["Params"] = row.get("params") or note
            # Benchmarks other than ImageNet FID (GenEval, DPG-Bench) name their own score columns.
            for column in section.get("columns") or [fid_name, *list(METRICS.values())[1:]]:
                cells[column] = note
            numbers["status"] = note
            shown.append(cells)
            raw.append(numbers)
            continue
        metrics = [read_json(run["metrics"]) for run in row["runs"]]
        if section["name"] == "table2":
            params = count_parameters(row["runs"][0]["ckpt"])
            cells["Params"] = f"{params / 1e6:.1f}M" if params >= 1e5 else f"{params / 1e3:.1f}K"
            numbers["params"] = params
        if section.get("latency"):
            mean, std, _ = aggregate([latency_ms(read_json(run["stats"])) for run in row["runs"]])
            cells["Latency (ms/img)"] = fmt(mean, std)
            numbers["latency_ms_mean"], numbers["latency_ms_std"] = mean, std
        for name, column in {**METRICS, **OURS_ONLY}.items():
            mean, std, n = aggregate([m[name] for m in metrics])
            column = fid_name if name == "fid" else column
            cells[column] = fmt(mean, std, 3 if name in ("precision", "recall") else 2)
            numbers[f"{name}_mean"], numbers[f"{name}_std"], numbers["seeds"] = mean, std, n
            if name in METRICS:
                in_paper = row.get("method") != "finetune"
                paper = paper_value(f"{section['name']}/{row['key']}", name, toy or not in_paper)
                cells[f"{column} (paper)"] = paper
                numbers[f"{name}_paper"] = paper
        shown.append(cells)
        raw.append(numbers)
    return pd.DataFrame(shown).fillna(""), pd.DataFrame(raw)


def write_table(manifest: dict, out: Path) -> None:
    prov = manifest["provenance"]
    toy = is_toy(prov)
    md, csv = [], []
    for section in manifest["sections"]:
        shown, raw = section_frame(section, toy)
        if section["title"] != manifest["title"]:  # a one-section table needs no second heading
            md += [f"## {section['title']}", ""]
        if section.get("latency"):
            md += [LATENCY_NOTE, ""]
        md += [shown.to_markdown(index=False, disable_numparse=True), ""]
        raw.insert(0, "section", section["name"])
        csv.append(raw)
    header = [f"# {manifest['title']}", "", *provenance_lines(prov)]
    if toy:
        header.append("- toy scale: numbers are reported as they come; TensorAR may lose to its baseline here. "
                      "The fine-tune control gets the same steps, data and base learning rate as TensorAR.")
    atomic_write_text(out, "\n".join(header + [""] + md))
    with atomic_path(out.with_suffix(".csv")) as tmp:
        pd.concat(csv, ignore_index=True).to_csv(tmp, index=False)


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
        ours = aggregate([read_json(run["metrics"])["fid"] for run in row["runs"]])
        reference = aggregate([read_json(run["metrics"])["fid"] for run in row["reference"]])
        noise_rows.append({"Run": row["label"], f"{fid} (draft_noise: schedule)": fmt(*ours[:2]),
                           f"{fid} (draft_noise: none)": fmt(*reference[:2])})
    diag, noise = pd.DataFrame(rows).fillna(""), pd.DataFrame(noise_rows)
    text = ["# Draft-copying diagnostics of every TensorAR run", "", *provenance_lines(prov), "",
            "Columns come from `tensorar.diagnose` (held-out codes); see its docstring for each quantity.", "",
            diag.to_markdown(index=False, disable_numparse=True), "",
            "## Sampling with noised drafts (not from the paper)", "",
            "Each Table 2 TensorAR model sampled again with `--draft-noise schedule` (drafts re-noised with the "
            "training schedule before being fed back); an extra diagnostic row, not a result of the paper.", "",
            noise.to_markdown(index=False, disable_numparse=True), ""]
    atomic_write_text(out, "\n".join(text))
    with atomic_path(out.with_suffix(".csv")) as tmp:
        pd.concat([diag.assign(section="diagnostics"), noise.assign(section="draft_noise")]).to_csv(tmp, index=False)


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------
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
        if "runs" not in row:
            continue
        mean = aggregate([read_json(r["metrics"])["fid"] for r in row["runs"]])[0]
        rate = aggregate([read_json(r["stats"])["generate_images_per_s"] or math.nan for r in row["runs"]])[0]
        params = count_parameters(row["runs"][0]["ckpt"])
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


# --------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tensorar tables", description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("table", "diagnostics", "figures"))
    parser.add_argument("--manifest", required=True, help="JSON text (or @path to a JSON file) from the workflow")
    parser.add_argument("--out", help="Markdown output (table, diagnostics); the CSV is written beside it")
    args = parser.parse_args(argv)
    text = Path(args.manifest[1:]).read_text() if args.manifest.startswith("@") else args.manifest
    manifest = json.loads(text)
    if args.what != "figures" and not args.out:
        parser.error(f"{args.what} needs --out")
    if args.what == "table":
        write_table(manifest, Path(args.out))
    elif args.what == "diagnostics":
        write_diagnostics(manifest, Path(args.out))
    else:
        write_figures(manifest)


if __name__ == "__main__":
    main()
