"""The analytic memory plan (tensorar.resources) against torch's MemTracker running the real training
step, for every paper row (Tables 2-3, TensorAR k = 4, the plan's per-GPU batch) on fake tensors, and for
small configs on real CPU tensors (docs/resources.md holds the numbers).

    python benchmarks/memory.py                    # every paper row, with and without checkpointing
    python benchmarks/memory.py --rows LlamaGen-B-256 --no-checkpointing

One rank, unsharded: the tracker has no process group (no fake ones here), so the analytic side drops
DDP's gradient buckets; FSDP's sharding is checked by a real two-process gloo run instead. On fake
tensors nothing is computed: a row takes seconds to minutes of CPU, whatever its size.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tensorar.plan import Plan
from tensorar.resources.architecture import ModelSpec, architecture
from tensorar.resources.jobs import planned_jobs
from tensorar.resources.memory import training_peak
from tensorar.resources.tracking import fsdp_tracked_peak, tracked_training_peak
from tensorar.stages.resources import SCHEMA, load_config

GiB = 2**30
# Small configs whose step runs for real on the CPU (ours: the toy presets, and GPT-B at a small batch).
SMALL = {
    "GPT-toy-M k=4": (ModelSpec("llamagen", "GPT-toy-M", 64, 256, 10, k=4), 32),
    "AR-toy k=4": (ModelSpec("open_magvit2", "AR-toy", 64, 256, 10, k=4), 32),
    "GPT-toy-t2i k=4": (ModelSpec("llamagen_t2i", "GPT-toy-t2i", 64, 256, None, k=4), 32),
    "GPT-B k=4": (ModelSpec("llamagen", "GPT-B", 256, 16384, 1000, k=4), 2),
}
FSDP_WORLD = 2


def paper_rows(config_file: Path) -> dict[str, tuple[ModelSpec, int]]:
    """Each Table 2-3 backbone's TensorAR (default variant) training job: its model and per-GPU batch."""
    jobs = planned_jobs(Plan(load_config(config_file, Path(SCHEMA))))
    return {j.name.split()[1]: (j.spec, j.batch // j.gpus) for j in jobs
            if j.stage == "train" and j.name.endswith(" tensorar-default")}


def predicted(spec: ModelSpec, batch: int, checkpointing: bool) -> int:
    peak = training_peak(architecture(spec), batch, 1, "ddp", checkpointing, device="cpu")
    return peak.total - peak.other  # no DDP buckets on the tracker's single rank


def compare(name: str, spec: ModelSpec, batch: int, checkpointing: bool, real: bool) -> dict:
    start = time.time()
    row = {"row": name, "batch": batch, "checkpointing": checkpointing,
           "analytic": predicted(spec, batch, checkpointing),
           "fake": tracked_training_peak(spec, batch, checkpointing, fake=True)["Total"]}
    if real:
        row["real"] = tracked_training_peak(spec, batch, checkpointing, fake=False)["Total"]
    row["seconds"] = round(time.time() - start, 1)
    return row


def compare_fsdp(name: str, spec: ModelSpec, batch: int, checkpointing: bool) -> dict:
    """Rank 0 of a real FSDP_WORLD-process gloo run against the analytic FSDP rank."""
    start = time.time()
    peak = training_peak(architecture(spec), batch, FSDP_WORLD, "fsdp", checkpointing, device="cpu")
    return {"row": f"{name} FSDP x{FSDP_WORLD}", "batch": batch, "checkpointing": checkpointing,
            "analytic": peak.total, "real": fsdp_tracked_peak(spec, batch, checkpointing, FSDP_WORLD)["Total"],
            "seconds": round(time.time() - start, 1)}


def markdown(rows: list[dict]) -> str:
    if rows and "fake" not in rows[0]:  # FSDP rows: real runs only
        lines = ["| row | batch/GPU | AC | analytic GiB | FSDPMemTracker (real, gloo) GiB | analytic / real |",
                 "|---|---|---|---|---|---|"]
        return "\n".join(lines + [f"| {r['row']} | {r['batch']} | {'yes' if r['checkpointing'] else 'no'} "
                                  f"| {r['analytic'] / GiB:.3f} | {r['real'] / GiB:.3f} | {r['analytic'] / r['real']:.3f} |"
                                  for r in rows])
    real = any("real" in r for r in rows)
    head = "| row | batch/GPU | AC | analytic GiB | MemTracker (fake) GiB | analytic / fake |"
    lines = [head + (" MemTracker (real CPU) GiB | analytic / real |" if real else ""),
             "|---" * (6 + 2 * real) + "|"]
    for r in rows:
        line = (f"| {r['row']} | {r['batch']} | {'yes' if r['checkpointing'] else 'no'} | {r['analytic'] / GiB:.2f} "
                f"| {r['fake'] / GiB:.2f} | {r['analytic'] / r['fake']:.3f} |")
        if real:
            line += f" {r['real'] / GiB:.3f} | {r['analytic'] / r['real']:.3f} |"
        lines.append(line)
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configfile", type=Path, default=Path("config/paper.yaml"))
    parser.add_argument("--rows", nargs="*", help="paper rows (backbone names; default: all)")
    parser.add_argument("--no-checkpointing", action="store_true", help="skip the activation-checkpointing runs")
    parser.add_argument("--sections", nargs="*", choices=("small", "fsdp", "paper"),
                        default=["small", "fsdp", "paper"],
                        help="small configs on real tensors, real FSDP runs, paper rows on fake tensors")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    modes = (False,) if args.no_checkpointing else (False, True)
    results = []
    sections = {"small": [], "fsdp": [], "paper": []}
    for name, (spec, batch) in SMALL.items() if "small" in args.sections else ():
        for ac in modes:
            sections["small"].append(compare(name, spec, batch, ac, real=True))
            print(markdown(sections["small"][-1:]).splitlines()[-1], flush=True)
    for name in ("GPT-toy-M k=4", "GPT-B k=4") if "fsdp" in args.sections else ():
        for ac in modes:
            sections["fsdp"].append(compare_fsdp(name, *SMALL[name], ac))
            print(markdown(sections["fsdp"][-1:]).splitlines()[-1], flush=True)
    if "paper" in args.sections:
        paper = paper_rows(args.configfile)
        for name in args.rows or paper:
            spec, batch = paper[name]
            for ac in modes:
                sections["paper"].append(compare(name, spec, batch, ac, real=False))
                print(markdown(sections["paper"][-1:]).splitlines()[-1], flush=True)
    for rows in sections.values():
        if rows:
            print("\n" + markdown(rows))
        results += rows
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
