"""A run directory's checkpoints: where they go, which one a restart resumes from, which are pruned."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from tensorar.checkpoint import read_checkpoint
from tensorar.fileio import atomic_write_text

# Training-state keys a resumable checkpoint file must hold (besides the model written by model_checkpoint).
STATE_KEYS = ("optimizer", "step", "data_position", "args")
TRAINING_STATE = "training_state.pt"  # a sharded checkpoint's non-tensor part (tensorar.training.state)


def step_checkpoint_path(run_dir: Path, step: int, sharded: bool = False) -> Path:
    """A file (DDP) or a distributed-checkpoint folder (FSDP; tensorar.training.state)."""
    name = f"step_{step:07d}"
    return run_dir / "checkpoints" / (name if sharded else f"{name}.pt")


def checkpoint_step(path: Path) -> int:
    return int(path.name.split(".")[0].split("_")[1])


def step_checkpoints(run_dir: Path, sharded: bool) -> list[Path]:
    """The run's step checkpoints of one kind, oldest first (temporary folders, `.step_*.tmp`, excluded)."""
    found = (run_dir / "checkpoints").glob("step_*" if sharded else "step_*.pt")
    return sorted((p for p in found if p.is_dir() == sharded), key=checkpoint_step)


def remove_partial_checkpoint_folders(run_dir: Path) -> list[Path]:
    """Sharded saves killed before their rename (`.step_XXXXXXX.tmp/`). Rank 0, holding the run's lock."""
    partial = [p for p in (run_dir / "checkpoints").glob(".step_*.tmp") if p.is_dir()]
    for path in partial:
        shutil.rmtree(path)
    return partial


def read_training_state(path: Path) -> dict:
    """A checkpoint's training state: the whole file, or a sharded folder's `training_state.pt` (its
    tensors stay in the folder's shards). Raises if it is incomplete."""
    if path.is_dir():
        if not (path / ".metadata").is_file():
            raise FileNotFoundError(f"{path} has no .metadata (an incomplete distributed checkpoint)")
        ckpt = read_checkpoint(path / TRAINING_STATE)
        required = ("model_config", "step", "data_position", "args")
    else:
        ckpt = read_checkpoint(path)
        required = ("model", "model_config", *STATE_KEYS)
    missing = [k for k in required if k not in ckpt]
    if missing:
        raise KeyError(f"no {', '.join(missing)}")
    return ckpt


def finished_run(run_dir: Path, steps: int) -> dict | None:
    """final.pt's contents when it loads and has exactly `steps` steps: the run is complete."""
    final = run_dir / "final.pt"
    if not final.is_file():
        return None
    try:
        ckpt = read_checkpoint(final)
    except Exception:  # unreadable: not complete; the resume below skips it with a warning
        return None
    return ckpt if ckpt.get("step") == steps and "model" in ckpt else None


def find_resume_checkpoint(run_dir: Path, log, max_step: int, sharded: bool = False) -> tuple[Path, dict] | None:
    """The newest checkpoint at or before `max_step` (the run's --steps) that loads and holds a training
    state: final.pt (DDP runs; an FSDP final.pt has no optimizer state), then the step checkpoints
    newest first. A later one (a rerun with fewer --steps) is passed over, so the result has exactly
    --steps steps.

    A checkpoint that fails to load (truncated by a full disk, a partial copy, ...) is skipped with a warning.
    """
    candidates = [p for p in reversed(step_checkpoints(run_dir, sharded)) if checkpoint_step(p) <= max_step]
    if not sharded and (run_dir / "final.pt").is_file():
        candidates.insert(0, run_dir / "final.pt")
    for path in candidates:
        try:
            ckpt = read_training_state(path)
        except Exception as err:  # any unreadable file means "not a complete checkpoint": try the previous
            log.warning(f"ignoring incomplete or corrupt checkpoint {path} ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''}); trying the previous one")
            continue
        if ckpt["step"] > max_step:
            log.info(f"{path} has {ckpt['step']} steps, more than --steps {max_step}: not resumed from")
            continue
        return path, ckpt
    return None


def prune_checkpoints(run_dir: Path, keep_steps: set[int], sharded: bool = False, keep_latest: int = 2) -> None:
    for path in step_checkpoints(run_dir, sharded)[:-keep_latest]:
        if checkpoint_step(path) not in keep_steps:
            shutil.rmtree(path) if sharded else path.unlink()


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
    """metrics.jsonl written whole (atomically) from a checkpoint's history: at every start, and at the
    end of a run. The loss curve survives a rerun that deleted the file (Snakemake deletes declared
    outputs before it reruns a job), and lines an orphaned trainer appended to a file deleted under it
    are replaced by the whole history once the run completes or is found complete."""
    atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in history))
