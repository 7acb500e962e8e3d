"""extract_codes: images -> token shards that equal direct `encode`, resumable, with a full manifest."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from tensorar.data.codes import load_codes
from tensorar.data.imagefolder import center_crop_arr, to_signed_tensor
from tensorar.models.vq import VQConfig, VQModel, load_vq, vq_checkpoint
from tensorar.stages.extract_codes import Views, main

TINY = VQConfig(codebook_size=16, codebook_embed_dim=4, encoder_ch_mult=(1, 2), decoder_ch_mult=(1, 2),
                z_channels=8, base_channels=8, num_res_blocks=1, norm_groups=4)
CLASSES = {"zebra": 3, "ant": 4}  # sorted class names -> ant = 0, zebra = 1


@pytest.fixture
def setup(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in CLASSES.items():
        (tmp_path / "data" / name).mkdir(parents=True)
        for j in range(n):
            # 10x12 images: exercises the resize + centre crop to 8x8.
            Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(
                tmp_path / "data" / name / f"{j:02d}.png")
    torch.manual_seed(0)
    torch.save(vq_checkpoint(VQModel(TINY)), tmp_path / "vq.pt")
    return tmp_path


def run(root, *extra):
    main(["--data", str(root / "data"), "--vq", str(root / "vq.pt"), "--out", str(root / "codes"),
          "--image-size", "8", "--shard-size", "3", "--batch-size", "2", *extra])


def expected_codes(root, flip: bool) -> tuple[torch.Tensor, list[int]]:
    vq = load_vq(root / "vq.pt")
    codes, labels = [], []
    for label, name in enumerate(sorted(CLASSES)):
        for path in sorted((root / "data" / name).iterdir()):
            x = to_signed_tensor(center_crop_arr(Image.open(path).convert("RGB"), 8))  # (3, 8, 8)
            views = torch.stack([x, x.flip(-1)] if flip else [x])  # (A, 3, 8, 8)
            codes.append(vq.encode(views).flatten(1))  # (A, 16)
            labels.append(label)
    return torch.stack(codes), labels


def test_codes_equal_direct_encode_and_manifest(setup):
    run(setup, "--augment", "center")
    codes, labels, manifest = load_codes(setup / "codes")
    want, want_labels = expected_codes(setup, flip=True)
    assert codes.dtype == torch.long and codes.shape == (7, 2, 16)
    assert torch.equal(codes, want) and labels.tolist() == want_labels
    assert np.load(setup / "codes" / "codes_00000.npy").dtype == np.uint16  # the smallest type for vocab 16
    assert np.load(setup / "codes" / "labels_00000.npy").dtype == np.int64
    sha = hashlib.sha256((setup / "vq.pt").read_bytes()).hexdigest()
    assert manifest["complete"] and manifest["tokenizer_sha256"] == sha
    assert manifest["tokenizer_path"] == str(setup / "vq.pt")
    assert {k: manifest[k] for k in ("count", "grid", "vocab_size", "num_augmentations", "augmentation",
                                     "image_size", "num_classes", "class_names", "views")} == {
        "count": 7, "grid": [4, 4], "vocab_size": 16, "num_augmentations": 2, "augmentation": "center",
        "image_size": 8, "num_classes": 2, "class_names": ["ant", "zebra"], "views": ["center", "center_flip"]}
    assert [s["count"] for s in manifest["shards"]] == [3, 3, 1]
    assert [s["codes"] for s in manifest["shards"]] == ["codes_00000.npy", "codes_00001.npy", "codes_00002.npy"]


def test_no_flip_keeps_only_the_plain_view(setup):
    run(setup, "--augment", "center", "--no-flip")
    codes, _, manifest = load_codes(setup / "codes")
    assert manifest["num_augmentations"] == 1 and torch.equal(codes, expected_codes(setup, flip=False)[0])


def test_tencrop_views():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (20, 24, 3), dtype=np.uint8))
    views = Views(16, "tencrop", flip=True)(image)  # crops of 16 from a 17x17 centre crop
    assert views.shape == (10, 3, 16, 16)
    # torchvision's TenCrop = five crops of the image + five of its mirror: tl_flip is the mirror of tr,
    # tr_flip of tl, bl_flip of br, br_flip of bl.
    for flipped, original in [(5, 1), (6, 0), (7, 3), (8, 2)]:
        assert torch.equal(views[flipped], views[original].flip(-1))
    assert not torch.equal(views[0], views[1])
    # The 1-pixel margin (17 - 16) is odd: the centre-crop offset rounds down, so "center" is the top-left
    # crop and "center_flip" is tl_flip, not the mirror of "center".
    assert torch.equal(views[4], views[0]) and torch.equal(views[9], views[5])
    assert torch.equal(Views(16, "tencrop", flip=False)(image), views[:5])


def test_tencrop_end_to_end_shape(setup):
    run(setup, "--augment", "tencrop")
    codes, _, manifest = load_codes(setup / "codes")
    assert codes.shape == (7, 10, 16) and manifest["num_augmentations"] == 10


def test_resume_skips_finished_shards(setup):
    run(setup, "--augment", "center")
    out = setup / "codes"
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    first, _, _ = load_codes(out)
    (out / "codes_00001.npy").unlink()  # as if the job died before shard 1 was written
    run(setup, "--augment", "center")
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    assert after.keys() == before.keys()
    redone = {name for name in after if after[name] != before[name]}
    assert redone == {"codes_00001.npy", "labels_00001.npy"}
    assert torch.equal(load_codes(out)[0], first)


def test_rerun_after_manifest_deleted_never_keeps_an_old_tokenizers_codes(setup, capsys):
    """Snakemake deletes manifest.json (the declared output) before rerunning a job whose tokenizer
    changed: the old shards must not survive under the new tokenizer's manifest."""
    run(setup, "--augment", "center")
    out = setup / "codes"
    (out / "manifest.json").unlink()
    (out / "codes_00001.npy").unlink()  # and the old job had not finished
    torch.manual_seed(7)
    torch.save(vq_checkpoint(VQModel(TINY)), setup / "vq.pt")  # a retrained tokenizer, same path
    run(setup, "--augment", "center")
    log = capsys.readouterr().err
    assert "starting fresh" in log and "tokenizer_sha256" in log
    codes, labels, manifest = load_codes(out)
    want, _ = expected_codes(setup, flip=True)
    assert torch.equal(codes, want)  # every shard from the new tokenizer
    # Other settings into the same folder: the same, and the manifest says what made the codes.
    run(setup, "--augment", "tencrop")
    assert load_codes(out)[0].shape == (7, 10, 16) and load_codes(out)[2]["augmentation"] == "tencrop"


def test_a_stale_partial_shard_is_removed_and_a_second_job_refused(setup):
    from tensorar.fileio import FolderLocked, exclusive_lock

    out = setup / "codes"
    out.mkdir()
    stale = out / ".codes_00000.npy.x1y2.tmp"
    stale.write_bytes(b"half a shard")
    run(setup, "--augment", "center")
    assert not stale.exists()
    with exclusive_lock(out, "extract_codes job"), pytest.raises(FolderLocked, match="in use"):
        run(setup, "--augment", "center")


def test_incomplete_extraction_is_refused(setup):
    run(setup, "--augment", "center")
    manifest_path = setup / "codes" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "complete": False}))
    with pytest.raises(RuntimeError, match="did not finish"):
        load_codes(setup / "codes")


@pytest.mark.slow
def test_torchrun_two_ranks_match_single_process(setup):
    run(setup, "--augment", "center")
    single, _, _ = load_codes(setup / "codes")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    "-m", "tensorar.extract_codes", "--data", str(setup / "data"), "--vq", str(setup / "vq.pt"),
                    "--out", str(setup / "codes2"), "--image-size", "8", "--shard-size", "3",
                    "--augment", "center"], check=True, env=env, timeout=300)
    multi, labels, manifest = load_codes(setup / "codes2")
    assert torch.equal(multi, single) and manifest["complete"]
