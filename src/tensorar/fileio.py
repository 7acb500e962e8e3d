"""Safe files: atomic writes, and the rules of resumable folders.

Atomic writes: a temp file in the same folder, fsync, then rename. A job killed mid-write therefore never
leaves a file that looks complete: either the old file (or nothing) is there, or the new one, whole. Every
output of the library goes through these helpers.

Resumable folders (training runs, sample shards, code shards): one writer at a time (`exclusive_lock`),
no stale partial files (`remove_stale_temp_files`), and work of one identity only (`claim_for`).
"""
from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import math
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from tensorar.errors import InputError, UserError

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
        _kill_point(path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


KILL_BEFORE_ENV = "TENSORAR_KILL_BEFORE"


def _kill_point(path: Path) -> None:
    """Kill tests' hook (ours): with TENSORAR_KILL_BEFORE=<glob>, the process SIGKILLs itself just before
    the first file whose name matches is put in place, a kill at a chosen moment with real signals."""
    pattern = os.environ.get(KILL_BEFORE_ENV)
    if pattern and fnmatch.fnmatch(path.name, pattern):
        os.kill(os.getpid(), signal.SIGKILL)


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


# --------------------------------------------------------------------------------------------------
# Readers: every parse error names the file (and line)
# --------------------------------------------------------------------------------------------------
def read_json(path: str | os.PathLike) -> Any:
    """A JSON file; a missing file is FileNotFoundError, unreadable bytes or syntax an InputError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"{path}:{err.lineno}: not valid JSON ({err.msg}, column {err.colno})") from None
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None


def read_finite_json(path: str | os.PathLike) -> Any:
    """A metrics / scores JSON whose every number must be finite: a NaN or infinite value (a failed
    evaluation; Python's json reads and writes them as NaN / Infinity) is an error naming the file (the
    run) and the key, never a number that prints as "n/a" or a crash later with no name."""
    path = Path(path)
    value = read_json(path)
    bad = _non_finite(value, "")
    if bad:
        raise InputError(f"{path}: non-finite metric values ({', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}): "
                         "the evaluation that wrote this run's file failed; rerun it")
    return value


def _non_finite(value: Any, where: str) -> list[str]:
    if isinstance(value, float):
        return [] if math.isfinite(value) else [f"{where or 'value'} = {value}"]
    if isinstance(value, dict):
        return [b for k, v in value.items() for b in _non_finite(v, f"{where}.{k}" if where else str(k))]
    if isinstance(value, list):
        return [b for i, v in enumerate(value) for b in _non_finite(v, f"{where}[{i}]")]
    return []


def read_jsonl(path: str | os.PathLike) -> list[tuple[int, Any]]:
    """(line number, value) of every non-blank line of a JSON-lines file; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((n, json.loads(line)))
        except json.JSONDecodeError as err:
            raise InputError(f"{path}:{n}: not valid JSON ({err.msg}, column {err.colno})") from None
    return out


@contextlib.contextmanager
def image_errors(name: str | os.PathLike) -> Iterator[None]:
    """Around PIL reads: a damaged or non-image file is an InputError naming it (a tar member: "shard:member")."""
    from PIL import UnidentifiedImageError

    try:
        yield
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:  # PIL's errors for bad bytes
        raise InputError(f"{name}: not a readable image ({type(err).__name__}: {err})") from None


def load_npy(path: str | os.PathLike, mmap_mode: str | None = None) -> np.ndarray:
    """np.load of one array; a missing or damaged file is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (an incomplete folder: rerun the stage that makes it)")
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"{path}: not a complete .npy array ({err}); rerun the stage that makes it") from None


# Files above this size in a model folder are identified by size + mtime, not hashed (see content_id).
HASHED_FILE_LIMIT = 64 << 20


def content_id(path: str | os.PathLike) -> str:
    """What a model input is made of, as one string: a file's sha256; for a model folder (Janus-Pro,
    flan-t5-xl: transformers layouts of 10-30 GB), "folder:" + a hash of `folder_identity`."""
    path = Path(path)
    if path.is_dir():
        return "folder:" + identity_hash(folder_identity(path))
    return sha256_file(path)


def folder_identity(folder: str | os.PathLike) -> list[list]:
    """A model folder's identity without reading gigabytes (ours): every file's relative name and size,
    the sha256 of the small ones (configs, tokenizer files, indexes: <= 64 MiB) and the modification time
    (ns) of the large ones (weights). Hashing 10-30 GB at every job start would cost minutes per job on a
    network filesystem; a weight file replaced in place (a new download, another checkpoint) gets a new
    mtime. Not detected: a same-size replacement copied with its old mtime preserved (cp -p, rsync -t)."""
    folder = Path(folder)
    out = []
    for p in sorted(q for q in folder.rglob("*") if q.is_file() and not q.name.startswith(".")):
        st = p.stat()
        tag = sha256_file(p) if st.st_size <= HASHED_FILE_LIMIT else f"mtime_ns {st.st_mtime_ns}"
        out.append([str(p.relative_to(folder)), st.st_size, tag])
    return out


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


class FolderLocked(UserError, RuntimeError):
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


def claim_for(folder: str | os.PathLike, identity: dict, outputs: list[str | os.PathLike], log, what: str,
              logs: tuple[str, ...] = ()) -> bool:
    """Make `folder` hold work of `identity` only (the rule of docs/architecture.md, "Reruns"), deleting only
    what this kind of job recorded that it made.

    `outputs`: the glob patterns (relative to `folder`; a path inside it counts as its own name) of every
    file or folder the job writes there, completion markers (manifests) first. `identity.json` records
    who made the folder (`what`), these patterns and the identity:
    - the same maker and identity: the folder's work is resumed (True);
    - the same maker, another identity: the record is first marked as being cleared (a kill now leaves a
      folder no rerun resumes), the files matching the *recorded* patterns are deleted, the new record
      written, and the caller starts fresh (False); the log names the settings that changed;
    - another maker, or files but no record (another stage's folder, the user's files, or a folder from a
      version of tensorar that kept no record): InputError, nothing deleted;
    - an empty folder: the record is written (False).
    `logs`: names of the job's own log files, opened before the claim (never foreign, never deleted).
    """
    folder = Path(folder)
    path = folder / IDENTITY_NAME
    current = json.loads(json.dumps(identity, sort_keys=True, default=_json_default))
    patterns = [_relative_pattern(folder, p) for p in outputs]
    record = {"made_by": what, "outputs": patterns, "identity": current}
    recorded = _read_record(path)
    if recorded is not None and "made_by" not in recorded:  # written before records named their maker
        if recorded == current:  # this job's own earlier record: adopt it
            atomic_write_json(path, record)
            return True
        recorded = None
    if recorded is None:
        foreign = [p for p in _foreign_entries(folder) if p.name not in logs]
        if foreign:
            names = ", ".join(p.name for p in foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise InputError(
                f"{folder} holds {len(foreign)} entries ({names}) but no {IDENTITY_NAME} saying that a {what} made "
                f"them (another stage's folder, your own files, or a folder from an older version of tensorar): "
                "nothing was deleted. Point the job at an empty or new folder, or, if the contents are disposable, "
                "delete the folder yourself and rerun.")
        atomic_write_json(path, record)
        return False
    if recorded.get("made_by") != what:
        raise InputError(f"{folder} holds the work of another job ({recorded.get('made_by')}, says {path}), not of "
                         f"this {what}: nothing was deleted. Point the job at its own folder (an empty or new one).")
    if recorded.get("identity") == current and not recorded.get("clearing"):
        if recorded.get("outputs") != patterns:
            atomic_write_json(path, record)
        return True
    atomic_write_json(path, {**recorded, "clearing": True})  # a kill from here on leaves nothing resumable
    old = recorded.get("identity")
    existing = [p for pattern in recorded.get("outputs", []) for p in sorted(folder.glob(pattern))]
    existing = list(dict.fromkeys(existing))
    if existing:
        reason = ("made with other inputs or settings: " + ", ".join(_changed_keys(old, current))
                  if isinstance(old, dict) else "an interrupted clean-up")
        log.warning(f"{folder}: previous {what} ({len(existing)} files) {reason}; starting fresh")
        for p in existing:
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
    atomic_write_json(path, record)
    return False


def _relative_pattern(folder: Path, output: str | os.PathLike) -> str:
    if isinstance(output, Path):
        return str(output.relative_to(folder)) if output.is_absolute() or folder in output.parents else str(output)
    return str(output)


def _read_record(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        recorded = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path} is not a JSON record ({err}): it is not this job's; nothing was deleted. "
                         "Point the job at an empty or new folder.") from None
    if not isinstance(recorded, dict):
        raise InputError(f"{path} is not an identity record (a JSON object): nothing was deleted")
    return recorded


def _foreign_entries(folder: Path) -> list[Path]:
    """What a folder holds besides the lock, the record, partial temp files and empty sub-folders (nothing
    to lose there)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.name not in (LOCK_NAME, IDENTITY_NAME) and not _is_temp(p)
                  and not (p.is_dir() and not any(q.is_file() and not _is_temp(q) for q in p.rglob("*"))))


def _is_temp(p: Path) -> bool:
    return p.name.startswith(".") and p.name.endswith(".tmp")
