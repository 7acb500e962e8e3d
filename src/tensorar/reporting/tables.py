"""The result tables: what each of the paper's tables holds (sections, rows, which rows get a paper
value) and how a table is written (Markdown + CSV) from per-run metrics files.

The experiment plan (`tensorar.plan`) calls the section builders below with its paths; the `tables`
stage renders the resulting manifest. Values are reported as they come: mean ± sample std over seeds
when there are several, never filtered or tuned. Each Markdown file starts with a provenance header
(config hash, git commit, date, dataset, feature network, seeds); the paper's published values
(`tensorar.reporting.paper`) sit beside paper-scale rows.
"""
from __future__ import annotations

import datetime
import json
import math
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from tensorar.fileio import atomic_path, atomic_write_text, read_finite_json
from tensorar.reporting import paper

# METRICS.json key -> column name. The paper reports FID / IS / precision / recall; sFID is ours only.
METRICS = {"fid": "FID", "inception_score": "IS", "precision": "Precision", "recall": "Recall"}
OURS_ONLY = {"sfid": "sFID"}
# The toy GenEval's prompts split by whether the training captions held their composition (ours; the scores
# file's "subsets", written by score_benchmark --seen-prompts). Paper-scale GenEval has no such split.
PROMPT_SUBSETS = {"overall_seen": ("seen", "Overall (seen prompts)"),
                  "overall_unseen": ("unseen", "Overall (held-out prompts)")}
CONTROL_LABEL = "fine-tune control (equal steps; ours, not in the paper)"
# Table 6b's latency note: one for rows timed by `tensorar time_sampling` ({repeats}: the repeats pooled over
# a row's timing files), one for rows that fall back to the sampling job's own clock.
LATENCY_NOTE_TIMED = (
    "Latency: milliseconds per image, generation + decoding (AR steps and tokenizer decoding; our reading of "
    "the paper's Table 6b, which does not say), dedicated timing job: mean ± SD over {repeats} repeats "
    "(`tensorar time_sampling`: one job per backbone with the machine to itself, every core, its models "
    "interleaved round by round, warm-up rounds discarded; Fig. 4's throughput comes from the same jobs)."
)
LATENCY_NOTE_FALLBACK = (
    "Latency{rows}: generation time per image (tokenizer decoding excluded) as the sampling job measured it, while "
    "the workflow may have run other jobs on the same machine: rows of one run can differ by this alone "
    "(ours; no dedicated timing job for these rows; `benchmarks/sampling.py` times the samplers in isolation)."
)
FALLBACK_MARK = " (sampler)"  # a fallback latency cell in a section whose other rows were timed

Runs = Callable[..., list[dict]]  # runs(backbone, method, tag="final") -> [{"seed", "metrics", "stats"[, "timing"]}]


# --------------------------------------------------------------------------------------------------
# What the tables hold
# --------------------------------------------------------------------------------------------------
def _paper_cells(row: paper.ImageNetRow | str) -> dict | str:
    """A paper row as the renderer reads it (metrics by METRICS.json name), or the reason for none."""
    return row if isinstance(row, str) else asdict(row)


def table2_sections(backbones: list[dict], variant_label: str, runs: Runs, toy: bool) -> list[dict]:
    """Table 2: per backbone a base, an equal-steps fine-tune control and a +TensorAR row, then (paper
    scale) the other methods' rows as the paper prints them. `backbones`: {key, label, resolution,
    paper_row, pending} in table order."""
    rows = []
    for b in backbones:
        common = {"Model": b["label"], "Res.": b["resolution"]}
        for method, label in (("base", "base"), ("finetune", CONTROL_LABEL),
                              ("tensorar", f"with TensorAR ({variant_label})")):
            row = {"key": f"{b['key']}/{method}", "method": method, "cells": {**common, "Method": label},
                   "params": True}
            if b.get("pending"):
                row["pending"] = b["pending"]
            else:
                row["runs"] = runs(b["key"], method)
            row["paper"] = paper.NOT_IN_PAPER if toy else _paper_cells(paper.table2_row(b.get("paper_row"), method))
            rows.append(row)
    sections = [{"name": "table2", "title": "Table 2: class-to-image generation", "rows": rows}]
    if not toy:
        printed = [{"cells": {"Type": kind, "Model": r.model, "Params": r.params, "FID": r.fid, "IS": r.inception_score,
                              "Precision": r.precision, "Recall": r.recall}}
                   for kind, r in paper.TABLE2_OTHER_METHODS]
        sections.append({"name": "table2_other", "title": "Table 2 (continued): other methods, as printed in the "
                                                          "paper (not run here)", "printed": printed})
    return sections


ABLATIONS = {  # table -> (title, the column a variant row shows, the variant field it varies)
    "table5": ("Table 5: noise schedule", "Schedule", "schedule"),
    "table6a": ("Table 6a: tensor size k", "k", "k"),
    "table6b": ("Table 6b: plug-in depth and latency", "Depth", "depth"),
}


def ablation_section(table: str, backbone: dict, variants: dict[str, dict], variant_label: Callable[[str], str],
                     runs: Runs, toy: bool) -> dict:
    """Table 5 / 6a / 6b on one backbone: its base, the equal-steps control (the fair comparison for every
    variant) and one row per variant."""
    title, column, field = ABLATIONS[table]
    rows = []

    def add(key, method, value, run_method, variant=None, extra=None):
        found = paper.ablation_row(table, backbone.get("paper_row"), method, variant)
        rows.append({"key": f"{table}/{key}", "method": method,
                     "cells": {"Model": backbone["label"], column: value, **(extra or {})},
                     "runs": runs(backbone["key"], run_method),
                     "paper": paper.NOT_IN_PAPER if toy else _paper_cells(found)})

    add("base", "base", "base (no TensorAR)", "base")
    add("finetune", "finetune", CONTROL_LABEL, "finetune")
    for name, spec in variants.items():
        add(name, "tensorar", spec[field], f"tensorar-{name}", spec, {"Variant": variant_label(name)})
    section = {"name": table, "title": title, "rows": rows}
    if table == "table6b":
        section["latency"] = True
    return section


BENCHMARK_COLUMNS = {
    "geneval": {"single_object": "Single Obj.", "two_object": "Two Obj.", "counting": "Counting", "colors": "Colors",
                "position": "Position", "color_attr": "Color Attr.", "overall": "Overall"},
    "dpg": {"global": "Global", "entity": "Entity", "attribute": "Attribute", "relation": "Relation",
            "other": "Other", "overall": "Overall"},
}
BENCHMARKS = {"table3": ("geneval", "GenEval", paper.TABLE3, paper.TABLE3_OTHER_METHODS, paper.GENEVAL_COLUMNS),
              "table4": ("dpg", "DPG-Bench", paper.TABLE4, paper.TABLE4_OTHER_METHODS, paper.DPG_COLUMNS)}


def benchmark_sections(table: str, backbones: list[dict], variant_label: str, runs: Runs, toy: bool,
                       subsets: bool = False) -> list[dict]:
    """Tables 3 / 4 (GenEval, DPG-Bench): per text-to-image backbone its base, the equal-steps control and
    +TensorAR; at paper scale the paper's values beside ours and the other methods as printed. The toy's
    benchmark is ours (toy canvases, toy detector): never comparable with the paper's numbers. `subsets`:
    the scores files hold the seen / held-out prompt subsets, shown as two more overall columns."""
    benchmark, name, printed, others, order = BENCHMARKS[table]
    rows = []
    for b in backbones:
        for method, label in (("base", "base"), ("finetune", CONTROL_LABEL),
                              ("tensorar", f"with TensorAR ({variant_label})")):
            row = {"key": f"{b['key']}/{method}", "method": method,
                   "cells": {"Model": b["label"], "Method": label}, "params": True}
            if b.get("pending"):
                row["pending"] = b["pending"]
            else:
                row["runs"] = runs(b["key"], method)
            if toy:
                row["paper"] = paper.NOT_IN_PAPER
            elif method == "finetune":
                row["paper"] = paper.CONTROL_NOT_IN_PAPER
            elif b.get("paper_row") in printed:
                row["paper"] = dict(zip(order, printed[b["paper_row"]][method]))
            else:
                row["paper"] = paper.NO_PAPER_ROW
            rows.append(row)
    title = f"Table {table[-1]}: {name}" + (" (toy benchmark, ours: canvases of digits scored by a toy detector)"
                                            if toy else "")
    sections = [{"name": table, "title": title, "benchmark": benchmark, "rows": rows,
                 "subsets": subsets}]
    if not toy:
        columns = BENCHMARK_COLUMNS[benchmark]
        sections.append({"name": f"{table}_other", "title": f"Table {table[-1]} (continued): other methods, as printed "
                         "in the paper (not run here)",
                         "printed": [{"cells": {"Model": model, **{columns[k]: f"{v:.2f}" for k, v in zip(order, values)}}}
                                     for model, values in others.items()]})
    return sections


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


def fmt_params(stats: dict) -> str:
    """Parameter count as the sampler reported it, with the plug-in's overhead over its backbone."""
    n, base = stats["model"]["parameters"], stats["model"].get("base_parameters", stats["model"]["parameters"])
    text = f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n / 1e3:.1f}K"
    return text if n == base else f"{text} (+{100 * (n - base) / base:.1f}%)"


def latency_ms(stats: dict) -> float:
    """Milliseconds of generation per image (decode excluded), from the sampler's stats JSON: the fallback
    where a row has no timing job."""
    rate = stats.get("generate_images_per_s")
    return 1000.0 / rate if rate else math.nan


def timing_records(runs: list[dict]) -> list[dict]:
    """A row's model blocks in its timing jobs' TIMING.json (`tensorar time_sampling`, one job per backbone,
    `models[timed_model]`); typically only the first seed has one."""
    return [read_json(run["timing"])["models"][run["timed_model"]] for run in runs if run.get("timing")]


def row_latency_ms(runs: list[dict], stats: list[dict]) -> tuple[float, float, int, str]:
    """(mean, sample std, count, source) of a row's latency in ms per image. With timing files: their
    repeats' `latency_s` values pooled (generation + decoding, dedicated job), source "timing"; without:
    the sampling jobs' generation-only latency over seeds, source "sampler"."""
    timings = timing_records(runs)
    if timings:
        return (*aggregate([1000.0 * v for t in timings for v in t["latency_s"]["values"]]), "timing")
    return (*aggregate([latency_ms(st) for st in stats]), "sampler")


def row_throughput(runs: list[dict], stats: list[dict]) -> tuple[float, float, str]:
    """(mean, sample std, source) of a row's throughput in images/s: the timing files' repeats (`images_per_s`:
    generation + VQ decoding, as Sec. 3.1.3 measures Fig. 4) when there are any, else the sampling jobs'
    generation rate over seeds."""
    timings = timing_records(runs)
    if timings:
        mean, std, _ = aggregate([v for t in timings for v in t["images_per_s"]["values"]])
        return mean, std, "timing"
    mean, std, _ = aggregate([st.get("generate_images_per_s") or math.nan for st in stats])
    return mean, std, "sampler"


def latency_notes(raw: pd.DataFrame) -> list[str]:
    """The notes under a latency section (its CSV frame): how the timed rows were measured, with their
    repeat counts, and the sampler-clock caveat for rows without a timing job."""
    source = raw["latency_source"] if "latency_source" in raw else pd.Series(index=raw.index, dtype=object)
    timed, fallback = source == "timing", source == "sampler"
    notes = []
    if timed.any():
        counts = sorted({int(n) for n in raw.loc[timed, "latency_n"]})
        repeats = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]} (per row)"
        notes.append(LATENCY_NOTE_TIMED.format(repeats=repeats))
    if fallback.any():
        notes.append(LATENCY_NOTE_FALLBACK.format(rows=f" of the rows marked{FALLBACK_MARK}" if timed.any() else ""))
    return notes


# --------------------------------------------------------------------------------------------------
# Writing tables
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
    # A benchmark table says what its rows sampled (prompts x images), a class-to-image one its sample count.
    samples = prov.get("samples") or f"samples per model: {prov['num_samples']}"
    protocol = [f"- sampling protocol: " + "; ".join(f"{', '.join(keys)}: {text}" for text, keys in
                                                    prov["sampling_protocol"].items())] if prov.get("sampling_protocol") else []
    return [
        f"- config hash: `{prov['config_hash']}` (experiment `{prov['experiment']}`), git commit: "
        f"`{git_commit()}`, generated: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- dataset: {prov['dataset']}; feature network: {prov['feature_network']}",
        f"- seeds: {seeds} ({spread}); {samples}",
        *protocol,
    ]


def is_toy(prov: dict) -> bool:
    return prov["dataset"] == "digits"


def _paper_value(row: dict, metric: str):
    found = row.get("paper", paper.NO_PAPER_ROW)
    return found if isinstance(found, str) else found.get(metric)


def section_metrics(section: dict, toy: bool) -> tuple[dict[str, str], dict[str, str], dict[str, int]]:
    """(metrics with a paper column: key -> column, ours only, decimals) of a section: ImageNet's (FID, IS,
    precision, recall, sFID) or a benchmark's (GenEval / DPG-Bench categories)."""
    if "benchmark" in section:
        columns = BENCHMARK_COLUMNS[section["benchmark"]]
        digits = 3 if section["benchmark"] == "geneval" else 2
        subsets = {k: column for k, (_, column) in PROMPT_SUBSETS.items()} if section.get("subsets") else {}
        return columns, subsets, dict.fromkeys([*columns, *subsets], digits)
    fid = {"fid": "toy-FID" if toy else "FID"}
    digits = {"precision": 3, "recall": 3}
    return {**METRICS, **fid}, OURS_ONLY, {k: digits.get(k, 2) for k in (*METRICS, *OURS_ONLY)}


def _metric_values(section: dict, run: dict) -> dict:
    record = read_finite_json(run["metrics"])  # a NaN metric is an error naming the run's file
    if "benchmark" not in section:
        return record
    if not section.get("subsets"):
        return record["scores"]
    if "subsets" not in record:
        raise ValueError(f"{run['metrics']}: no seen / unseen prompt subsets (score_benchmark --seen-prompts)")
    return {**record["scores"], **{k: record["subsets"][subset]["scores"]["overall"]
                                   for k, (subset, _) in PROMPT_SUBSETS.items()}}


def section_frame(section: dict, toy: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(Markdown frame of formatted cells, CSV frame of raw numbers) of one table section."""
    with_paper, ours_only, digits = section_metrics(section, toy)
    shown, raw = [], []
    for row in section.get("printed", []):
        cells = {k: "-" if v is None else str(v) for k, v in row["cells"].items()}
        shown.append(cells)
        raw.append({**row["cells"], "status": "printed in the paper"})
    for row in section.get("rows", []):
        # Integer cells (e.g. resolution) as text, so pending rows' blanks don't turn them into floats.
        cells = {k: str(v) if isinstance(v, int) else v for k, v in row["cells"].items()}
        numbers = dict(row["cells"])
        if "pending" in row:
            note = f"pending ({row['pending']})"
            for column in with_paper.values():
                cells[column] = note
            if "paper" in row and not toy:  # what the paper printed for it, even while ours is pending
                if row.get("params"):
                    cells["Params (paper)"] = _paper_value(row, "params")
                for name, column in with_paper.items():
                    value = _paper_value(row, name)
                    cells[f"{column} (paper)"] = "-" if value is None else value
            numbers["status"] = note
            shown.append(cells)
            raw.append(numbers)
            continue
        metrics = [_metric_values(section, run) for run in row["runs"]]
        stats = [read_json(run["stats"]) for run in row["runs"]]
        if row.get("params"):
            cells["Params"] = fmt_params(stats[0])
            numbers["params"] = stats[0]["model"]["parameters"]
            if not toy:
                cells["Params (paper)"] = _paper_value(row, "params")
        if section.get("latency"):
            mean, std, n, source = row_latency_ms(row["runs"], stats)
            cells["Latency (ms/img)"] = fmt(mean, std)
            numbers["latency_ms_mean"], numbers["latency_ms_std"] = mean, std
            numbers["latency_n"], numbers["latency_source"] = n, source
        for name, column in {**with_paper, **ours_only}.items():
            mean, std, n = aggregate([m[name] for m in metrics])
            cells[column] = fmt(mean, std, digits[name])
            numbers[f"{name}_mean"], numbers[f"{name}_std"], numbers["seeds"] = mean, std, n
            if name in with_paper and not toy:  # the toy's header says once that it has no paper values
                value = _paper_value(row, name)
                cells[f"{column} (paper)"] = "-" if value is None else value
                numbers[f"{name}_paper"] = value
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
            if raw.get("latency_source") is not None and raw["latency_source"].nunique() > 1:
                sampler = raw["latency_source"] == "sampler"  # mixed sources: say which rows fell back
                column = shown["Latency (ms/img)"]
                shown["Latency (ms/img)"] = column.where(~sampler.to_numpy(), column + FALLBACK_MARK)
            for note in latency_notes(raw):
                md += [note, ""]
        md += [shown.to_markdown(index=False, disable_numparse=True), ""]
        raw.insert(0, "section", section["name"])
        csv.append(raw)
    header = [f"# {manifest['title']}", "", *provenance_lines(prov)]
    if toy:
        header.append("- toy scale: numbers are reported as they come; TensorAR may lose to its baseline here. "
                      "The fine-tune control gets the same steps, data and base learning rate as TensorAR. "
                      "No paper columns: the paper ran nothing at this scale (its values are in the paper-scale "
                      "tables of config/paper.yaml).")
    atomic_write_text(out, "\n".join(header + [""] + md))
    with atomic_path(out.with_suffix(".csv")) as tmp:
        pd.concat(csv, ignore_index=True).to_csv(tmp, index=False)
