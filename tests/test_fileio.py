"""Atomic writes: a failed write leaves nothing that looks complete; a good one has normal permissions."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from tensorar.fileio import atomic_path, atomic_save_npz, atomic_write_json


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"fid": 1.0})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("{partial")
            raise RuntimeError("killed mid-write")
    assert target.read_text().strip().startswith("{") and '"fid": 1.0' in target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_npz_written_whole_with_umask_permissions(tmp_path):
    target = tmp_path / "samples.npz"
    atomic_save_npz(target, arr_0=np.zeros((2, 4, 4, 3), np.uint8))
    assert np.load(target)["arr_0"].shape == (2, 4, 4, 3)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
