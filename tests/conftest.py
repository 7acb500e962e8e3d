"""Shared fixtures. Reference data lives in ../shared/reference (next to the checkout, never copied in);
tests that need it skip cleanly when it is absent (a user's clone has no ../shared)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TENSORAR_SHARED", REPO_ROOT.parent / "shared"))
REFERENCE = SHARED / "reference"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def llamagen_ref() -> Path:
    path = REFERENCE / "llamagen"
    if not path.is_dir():
        pytest.skip(f"LlamaGen reference data not found at {path}")
    return path


@pytest.fixture(scope="session")
def adm_ref() -> Path:
    path = REFERENCE / "adm"
    if not path.is_dir():
        pytest.skip(f"ADM reference data not found at {path}")
    return path


@pytest.fixture(autouse=True)
def _small_thread_count():
    # Tests use tiny tensors, where intra-op threads only add overhead (and oversubscribe the 2 cores
    # when a test starts subprocesses beside it).
    torch.set_num_threads(1)
    yield
