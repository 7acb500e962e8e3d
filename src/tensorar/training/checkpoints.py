"""A run directory's checkpoints: where they go, which one a restart resumes from, which are pruned."""
from __future__ import annotations

import json
from pathlib import Path

from tensorar.checkpoint import read_checkpoint
from tensorar.fileio import atomic_write_text

# Training-state keys a resumable checkpoint must hold (besides the model written by model_checkpoint).
STATE_KEYS = ("optimizer", "step", "data_position", "args")


def step_checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:07d}.pt"


def checkpoint_step(path: Path) -> int:
    return int(path.stem.split("_")[1])


def find_resume_checkpoint(run_dir: Path, log, max_step: int) -> tuple[Path, dict] | None:
    """The newest checkpoint at or before `max_step` (the run's --steps) that loads and holds a training
    state: final.pt, then step_* newest first. A later one (a rerun with fewer --steps) is passed over,
    so the result has exactly --steps steps.

    A file that fails to load (truncated by a full disk, a partial copy, ...) is skipped with a warning.
    """
    candidates = sorted((run_dir / "checkpoints").glob("step_*.pt"), key=checkpoint_step, reverse=True)
    candidates = [p for p in candidates if checkpoint_step(p) <= max_step]
    if (run_dir / "final.pt").is_file():
        candidates.insert(0, run_dir / "final.pt")
    for path in candidates:
        try:
            ckpt = read_checkpoint(path)
            missing = [k for k in ("model", "model_config", *STATE_KEYS) if k not in ckpt]
            if missing:
                raise KeyError(f"no {', '.join(missing)}")
        except Exception as err:  # any unreadable file means "not a complete checkpoint": try the previous
            log.warning(f"ignoring incomplete or corrupt checkpoint {path} ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''}); trying the previous one")
            continue
        if ckpt["step"] > max_step:
            log.info(f"{path} has {ckpt['step']} steps, more than --steps {max_step}: not resumed from")
            continue
        return path, ckpt
    return None


def prune_checkpoints(run_dir: Path, keep_steps: set[int], keep_latest: int = 2) -> None:
    paths = sorted((run_dir / "checkpoints").glob("step_*.pt"), key=checkpoint_step)
    for path in paths[:-keep_latest]:
        if checkpoint_step(path) not in keep_steps:
            path.unlink()


def read_metrics(path: Path, last_step: int) -> list[dict]:
    """metrics.jsonl lines up to `last_step` (checkpoints written before the history was saved in them)."""
    if not path.is_file():
        return []
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by the kill
            continue
        if record.get("step", last_step + 1) <= last_step:
            kept.append(record)
    return kept


def write_metrics(path: Path, history: list[dict]) -> None:
    """metrics.jsonl rewritten from the resumed checkpoint's history: the loss curve survives a rerun
    that deleted the file (Snakemake deletes declared outputs before it reruns a job)."""
    atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in history))
