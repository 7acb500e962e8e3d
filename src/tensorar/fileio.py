"""Safe files: atomic writes, and the rules of resumable folders.

Atomic writes: a temp file in the same folder, fsync, then rename. A job killed mid-write therefore never
leaves a file that looks complete: either the old file (or nothing) is there, or the new one, whole. Every
output of the library goes through these helpers.

Resumable folders (training runs, sample shards, code shards): one writer at a time (`exclusive_lock`),
no stale partial files (`remove_stale_temp_files`), and work of one identity only (`claim_for`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to `path`; on success rename it over `path`, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    # np.savez appends ".npz" to names without it, so write through an open file handle.
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (read in 4 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# --------------------------------------------------------------------------------------------------
# Resumable folders: one writer at a time, no stale partial files, and work of one identity only
# --------------------------------------------------------------------------------------------------
LOCK_NAME = ".lock"
IDENTITY_NAME = "identity.json"


class FolderLocked(RuntimeError):
    """Another process holds the folder's lock."""


@contextlib.contextmanager
def exclusive_lock(folder: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive lock on `folder` (a `.lock` file, flock) for the block; fail at once, naming the
    holder (pid, host, start time), when another process holds it. The kernel drops the lock when the
    holder dies, so a killed job never leaves the folder locked."""
    import fcntl
    import socket
    import time

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text().strip() or "unknown"
            raise FolderLocked(f"{folder} is in use by another {what} ({holder}); wait for it to finish or stop "
                               "it, then rerun (a second writer would mix their outputs)") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
                 .encode())
        yield
    finally:
        os.close(fd)  # releases the flock


def remove_stale_temp_files(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Delete the `.<name>.<random>.tmp` files `atomic_path` leaves when a process is killed mid-write
    (checkpoints: gigabytes). Call only while holding the folder's lock, so no live writer owns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = "**/.*.tmp" if recursive else ".*.tmp"
    removed = [p for p in folder.glob(pattern) if p.is_file()]
    for p in removed:
        p.unlink()
    return removed


def _changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted names of the leaves that differ between two nested dicts."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changed_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def identity_hash(identity: Any) -> str:
    """A short hash of a JSON-ready description of what made an artefact."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=_json_default).encode()).hexdigest()[:16]


def claim_for(folder: str | os.PathLike, identity: dict, previous_work: list[Path], log, what: str) -> bool:
    """Make `folder` hold work of `identity` only (the rule of docs/architecture.md, "Reruns").

    A matching `identity.json` means the folder's work was made by the same inputs and settings: resume
    (True). A missing or different one: the folder's previous work (`previous_work`) is deleted, the new
    identity recorded, and the caller starts fresh (False); the log names the settings that changed.
    """
    folder = Path(folder)
    path = folder / IDENTITY_NAME
    recorded = json.loads(path.read_text()) if path.is_file() else None
    current = json.loads(json.dumps(identity, sort_keys=True, default=_json_default))
    if recorded == current:
        return True
    existing = [p for p in dict.fromkeys(previous_work) if p.exists()]
    if existing:
        if recorded is None:
            reason = "no record of what made it"
        else:
            reason = "made with other inputs or settings: " + ", ".join(_changed_keys(recorded, current))
        log.warning(f"{folder}: previous {what} ({len(existing)} files) {reason}; starting fresh")
        for p in existing:
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
    atomic_write_json(path, current)
    return False
