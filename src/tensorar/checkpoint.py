"""Reading checkpoint files safely and loading state dicts strictly (no model knowledge here: the model
families and `tensorar.models.loading` build on it).

Accepted layouts: `{"model": sd}` (LlamaGen releases, our files), `{"state_dict": sd}`, `{"module": sd}`
(DeepSpeed), a bare state dict (FSDP `consolidated.pth`), and LlamaGen's DDP training checkpoints that
pickle an `argparse.Namespace` under "args". Loading is `weights_only=True` with `argparse.Namespace`
allow-listed (plain data, safe to rebuild); anything else that needs full unpickling is refused unless
the caller opts in (`allow_unsafe_pickle=True` or `TENSORAR_ALLOW_UNSAFE_PICKLE=1`), which is logged.
"""
from __future__ import annotations

import argparse
import logging
import os
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from tensorar.errors import UserError

log = logging.getLogger("tensorar.checkpoint")

# Buffers LlamaGen keeps in its modules but that are not weights (rebuilt by us, never loaded).
_RUNTIME_BUFFER_SUFFIXES = (".kv_cache.k_cache", ".kv_cache.v_cache")
_RUNTIME_BUFFER_NAMES = ("freqs_cis", "causal_mask")
# Prefixes added by wrappers: DDP / DeepSpeed ("module."), torch.compile ("_orig_mod.").
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")

GENERIC_HINT = "put the file at the path named in the config (config/README.md says where each one comes from)"


class CheckpointMismatchError(UserError, RuntimeError):
    """A state dict does not fit the model; the message lists every offending key."""


def read_checkpoint(path: str | os.PathLike, allow_unsafe_pickle: bool | None = None, hint: str = GENERIC_HINT) -> Any:
    """torch.load with weights_only=True (argparse.Namespace allowed); `hint` says where a missing file
    comes from."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}\n  ({hint})")
    if allow_unsafe_pickle is None:
        allow_unsafe_pickle = os.environ.get("TENSORAR_ALLOW_UNSAFE_PICKLE") == "1"
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not _needs_unsafe_pickle(err):
            raise UnreadableCheckpoint(_unreadable(path, err)) from err
        names = sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(err)))) or ["a class weights_only refuses"]
        if _blocked_module(err):  # os.system, subprocess, eval, ...: no checkpoint needs them
            raise UnsafeCheckpoint(
                f"{path} refers to {', '.join(names)}, from a module torch blocks because it executes code: this is "
                "not a model checkpoint but a program. It is refused even with TENSORAR_ALLOW_UNSAFE_PICKLE=1; "
                "do not use the file.") from None
        if not allow_unsafe_pickle:
            raise UnsafeCheckpoint(
                f"{path} holds Python objects beyond tensors and plain data ({', '.join(names)}); loading them "
                "needs full unpickling, which can execute code. If you trust the file, pass "
                "allow_unsafe_pickle=True or set TENSORAR_ALLOW_UNSAFE_PICKLE=1."
            ) from err
        log.warning("loading %s with weights_only=False (opted in): the file can execute code", path)
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # garbage or truncated bytes surface as many error types inside torch.load
        raise UnreadableCheckpoint(_unreadable(path, err)) from err


class UnreadableCheckpoint(UserError, RuntimeError):
    """A file that is not a (complete) torch checkpoint."""


class UnsafeCheckpoint(UserError, RuntimeError):
    """A well-formed checkpoint whose loading needs full unpickling (code execution)."""


def _needs_unsafe_pickle(err: Exception) -> bool:
    """A well-formed pickle that weights_only refuses for the globals it names (not garbage bytes). torch's
    wording changed across versions: "not an allowed global", "Unsupported global", and since 2.5 "unsupported
    GLOBAL x.y whose module z is blocked"."""
    text = str(err)
    return any(s in text for s in ("not an allowed global", "Unsupported global", "Unsupported class",
                                   "unsupported GLOBAL", "is blocked")) or bool(re.search(r"GLOBAL [\w.]+", text))


def _blocked_module(err: Exception) -> bool:
    return "is blocked" in str(err)


def _unreadable(path: Path, err: Exception) -> str:
    size = path.stat().st_size
    what = "empty" if size == 0 else f"{size:,} bytes, not a complete torch checkpoint"
    return (f"{path} cannot be read ({what}: {type(err).__name__}: {str(err).strip().splitlines()[0][:200] if str(err) else 'no detail'}). "
            "It may be truncated by a full disk or an interrupted copy, or not be a checkpoint at all: "
            "copy or download it again.")


def extract_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """Find the weights inside any accepted layout and normalise the key names."""
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict", "module"):
            if key in obj and isinstance(obj[key], Mapping):
                return extract_state_dict(obj[key])
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {_strip_prefixes(k): v for k, v in obj.items() if not _is_runtime_buffer(k)}
    raise ValueError(
        "no state dict found: expected a bare state dict or one under 'model', 'state_dict' or 'module'"
    )


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def _is_runtime_buffer(key: str) -> bool:
    return key.endswith(_RUNTIME_BUFFER_SUFFIXES) or key.split(".")[-1] in _RUNTIME_BUFFER_NAMES


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str = "checkpoint"):
    """`load_state_dict(strict=True)` with one message listing missing, unexpected and mis-shaped keys."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state_dict)
        if state_dict[k].shape != expected[k].shape
    )
    if missing or unexpected or wrong_shape:
        parts = [f"{what} does not match the model:"]
        for name, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if keys:
                parts.append(f"  {name} ({len(keys)}): " + ", ".join(keys[:20]) + (" ..." if len(keys) > 20 else ""))
        raise CheckpointMismatchError("\n".join(parts))
    model.load_state_dict(state_dict, strict=True)
