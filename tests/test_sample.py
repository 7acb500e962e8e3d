"""tensorar sample: labels, per-sample randomness, post-processing, sharding/resume, npz format, image_grids.

Tiny models: a GPT of dim 32, 2 layers, vocab 64, 5 classes, 4x4 token grid, and a real VQModel with
64 codes that decodes the 4x4 grid to 8x8 images.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tensorar.decoding import cpu_packing
from tensorar.decoding.images import draw_uniforms, to_uint8_nhwc
from tensorar.decoding.sampling import SamplingConfig, SamplingOptions
from tensorar.distributed import DistInfo
from tensorar.models.loading import save_model
from tensorar.models.vq import vq_checkpoint
from tensorar.reporting import image_grids
from tensorar.sampling.labels import balanced_labels, class_labels
from tensorar.sampling.sampler import Sampler
from tensorar.sampling.shards import run_sampling, shard_dir_for, shard_path
from tensorar.stages.sample import main

NUM_CLASSES, VOCAB, GRID, K = 5, 64, 4, 3
CPU = torch.device("cpu")
PLAIN = SamplingOptions()


@pytest.fixture(scope="module")
def gpt(tiny):
    return tiny.gpt(vocab=VOCAB, classes=NUM_CLASSES, tokens=GRID * GRID)


@pytest.fixture(scope="module")
def tensorar(tiny, gpt):
    return tiny.tensorar(gpt, k=K)


@pytest.fixture(scope="module")
def vq(tiny):
    return tiny.vq(codes=VOCAB)


@pytest.fixture(scope="module")
def files(tmp_path_factory, gpt, tensorar, vq) -> dict:
    root = tmp_path_factory.mktemp("ckpts")
    save_model(root / "gpt.pt", gpt)
    save_model(root / "tensorar.pt", tensorar)
    torch.save(vq_checkpoint(vq), root / "vq.pt")
    return {name: str(root / f"{name}.pt") for name in ("gpt", "tensorar", "vq")}


def _single() -> DistInfo:
    return DistInfo(rank=0, world_size=1, local_rank=0, device=CPU)


def sample_to(model, decode, out, cfg, options, info, batch_size=32, **kwargs) -> dict:
    """`run_sampling` with a sampler of `model` on the rank's device."""
    return run_sampling(Sampler(model, decode, options, info.device, batch_size=batch_size), out, cfg, info, **kwargs)


def _load(path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


# ----- labels and randomness ----------------------------------------------------------------------
def test_balanced_labels_counts_spread_and_seed():
    labels = balanced_labels(23, 10, seed=0)
    counts = np.bincount(labels, minlength=10)
    assert labels.dtype == np.int64 and len(labels) == 23
    assert counts.sum() == 23 and counts.max() - counts.min() == 1
    extra = np.flatnonzero(counts == 3)
    assert len(extra) == 3 and extra.tolist() != [0, 1, 2]  # remainder spread, not piled on the first
    assert np.array_equal(labels, balanced_labels(23, 10, seed=0))
    assert not np.array_equal(labels, balanced_labels(23, 10, seed=1))  # shuffled by seed
    assert np.array_equal(np.bincount(balanced_labels(20, 10, seed=5)), np.full(10, 2))


def test_random_labels_in_range_and_seeded():
    labels = class_labels("random", 200, 7, seed=4)
    assert labels.dtype == np.int64 and labels.min() >= 0 and labels.max() < 7
    assert np.array_equal(labels, class_labels("random", 200, 7, seed=4))
    assert len(np.unique(labels)) == 7


def test_uniforms_depend_on_seed_and_index_only():
    both, _ = draw_uniforms(0, np.array([3, 5]), num_tokens=16)
    alone, _ = draw_uniforms(0, np.array([5]), num_tokens=16)
    assert both.shape == (2, 16, 1, 1) and torch.equal(both[1], alone[0])
    assert not torch.equal(both[0], both[1])
    assert not torch.equal(draw_uniforms(1, np.array([5]), 16)[0][0], alone[0])
    # TensorAR: the token uniforms do not change when draft-noise draws are added after them.
    plain, none = draw_uniforms(0, np.array([2, 7]), 16, k=K)
    noisy_u, noise = draw_uniforms(0, np.array([2, 7]), 16, k=K, draft_noise=True)
    assert none is None and plain.shape == (2, 16, K, 1) and noise.shape == (2, 16, K, 2)
    assert torch.equal(plain, noisy_u)
    # Sub-token backbones draw one uniform per part; the first part's stream is unchanged.
    parts, _ = draw_uniforms(0, np.array([2]), 16, k=K, parts=2)
    assert parts.shape == (1, 16, K, 2)


# ----- post-processing ----------------------------------------------------------------------------
def test_to_uint8_nhwc_matches_llamagen_maths():
    values = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.5, 0.999, 1.0, 2.0])
    x = values.view(1, 1, 1, 8).expand(2, 3, 8, 8).clone()  # (B, 3, H, W)
    x[1, 1] = 0.25  # a second sample with a different green channel
    out = to_uint8_nhwc(x)
    assert out.dtype == np.uint8 and out.shape == (2, 8, 8, 3)  # NHWC
    # clamp(127.5 x + 128, 0, 255) then truncation: -1 -> 0.5 -> 0, 0.5 -> 191.75 -> 191, 1 -> 255
    assert out[0, 0, :, 0].tolist() == [0, 0, 64, 128, 191, 255, 255, 255]
    assert (out[1, :, :, 1] == 159).all() and np.array_equal(out[1, :, :, 0], out[0, :, :, 0])


def test_to_uint8_nhwc_bicubic_resize_to_eval_size():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    out = to_uint8_nhwc(x, image_size=12)
    assert out.shape == (2, 12, 12, 3)
    expected = torch.clamp(127.5 * F.interpolate(x, size=(12, 12), mode="bicubic") + 128, 0, 255)
    assert np.array_equal(out, expected.permute(0, 2, 3, 1).to(torch.uint8).numpy())
    assert np.array_equal(to_uint8_nhwc(x, image_size=8), to_uint8_nhwc(x))  # same size: no resampling


# ----- invariance, shards and resume --------------------------------------------------------------
def _tokens(model, vq, cfg, options, batch_size, n=7):
    labels = class_labels(cfg.labels, n, NUM_CLASSES, cfg.seed)
    return Sampler(model, vq.decode, options, CPU, batch_size=batch_size).class_images(labels, np.arange(n), cfg)


def test_gpt_batch_size_invariance(gpt, vq):
    options = SamplingOptions(cfg_scale=2.0, top_k=40, top_p=0.95)
    cfg = SamplingConfig(num_samples=7, seed=3)
    a, b = _tokens(gpt, vq, cfg, options, 2), _tokens(gpt, vq, cfg, options, 3)
    assert a["tokens"].shape == (7, GRID * GRID)
    assert np.array_equal(a["tokens"], b["tokens"]) and np.array_equal(a["arr_0"], b["arr_0"])
    assert len({row.tobytes() for row in a["tokens"]}) == 7  # samples differ from one another
    c = _tokens(gpt, vq, SamplingConfig(num_samples=7, seed=4), options, 2)
    assert not np.array_equal(a["tokens"], c["tokens"])


def test_tensorar_batch_size_invariance_with_draft_noise(tensorar, vq):
    cfg = SamplingConfig(num_samples=7, seed=3)
    noisy = SamplingOptions(cfg_scale=1.5, draft_noise="schedule")
    a, b = _tokens(tensorar, vq, cfg, noisy, 2), _tokens(tensorar, vq, cfg, noisy, 3)
    assert np.array_equal(a["tokens"], b["tokens"])
    plain = _tokens(tensorar, vq, cfg, SamplingOptions(cfg_scale=1.5), 3)
    assert not np.array_equal(a["tokens"], plain["tokens"])  # the noise reaches the samples


def test_world_size_invariance_and_npz_format(gpt, vq, tmp_path):
    cfg = SamplingConfig(num_samples=10, seed=1, shard_size=4)  # shards of 4, 4, 2
    single = tmp_path / "one" / "s.npz"
    stats = sample_to(gpt, vq.decode, single, cfg, PLAIN, _single(), batch_size=2, progress=False)
    # World size 2 without a process group: rank 0 claims the folder and makes its shards, but cannot
    # assemble before rank 1 has made its own; rank 0 run again resumes and assembles.
    double = tmp_path / "two" / "s.npz"
    rank = [DistInfo(rank=r, world_size=2, local_rank=r, device=CPU) for r in (0, 1)]
    with pytest.raises(FileNotFoundError, match="missing shard .*shard_00001"):
        sample_to(gpt, vq.decode, double, cfg, PLAIN, rank[0], batch_size=3, progress=False)
    sample_to(gpt, vq.decode, double, cfg, PLAIN, rank[1], batch_size=3, progress=False)
    resumed = sample_to(gpt, vq.decode, double, cfg, PLAIN, rank[0], batch_size=3, progress=False)
    assert resumed["shards_reused"] == 3

    a, b = _load(single), _load(double)
    assert set(a) == {"arr_0", "labels"}
    assert a["arr_0"].dtype == np.uint8 and a["arr_0"].shape == (10, 8, 8, 3)
    assert a["labels"].dtype == np.int64 and np.array_equal(a["labels"], class_labels("balanced", 10, NUM_CLASSES, 1))
    assert np.array_equal(a["arr_0"], b["arr_0"]) and np.array_equal(a["labels"], b["labels"])
    assert not shard_dir_for(single).exists() and not shard_dir_for(double).exists()
    assert stats["images_generated"] == 10 and stats["shards_generated"] == 3
    assert stats["per_class_counts"] == [2] * NUM_CLASSES


@pytest.mark.skipif(not cpu_packing.onednn_packing_available(), reason="this torch build cannot pack weights")
def test_sampling_packs_the_cpu_weights_once_per_run(gpt, vq, tmp_path):
    cfg = SamplingConfig(num_samples=6, seed=1, shard_size=4)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        sample_to(gpt, vq.decode, tmp_path / "s.npz", cfg, PLAIN, _single(), batch_size=2, progress=False)  # 3 batches
    packs = {e.key: e.count for e in prof.key_averages()}.get("mkldnn::_reorder_linear_weight", 0)
    assert packs == sum(isinstance(m, cpu_packing.PackableLinear) for m in gpt.modules())


def test_resume_after_partial_run_gives_identical_output(gpt, vq, tmp_path):
    cfg = SamplingConfig(num_samples=10, seed=2, shard_size=4)
    out = tmp_path / "s.npz"
    sample_to(gpt, vq.decode, out, cfg, PLAIN, _single(), batch_size=4, keep_shards=True, progress=False)
    reference = _load(out)
    shards = shard_dir_for(out)

    # A killed run: the output and shard 1 never got written, and a half-written temp file is left.
    out.unlink()
    shard_path(shards, 1).unlink()
    stale = shards / ".shard_00001.npz.abc123.tmp"
    stale.write_bytes(b"partial")
    kept = {j: os.stat(shard_path(shards, j)).st_mtime_ns for j in (0, 2)}
    stats = sample_to(gpt, vq.decode, out, cfg, PLAIN, _single(), batch_size=3, keep_shards=True, progress=False)

    assert stats["shards_reused"] == 2 and stats["shards_generated"] == 1 and stats["images_generated"] == 4
    assert {j: os.stat(shard_path(shards, j)).st_mtime_ns for j in (0, 2)} == kept  # not regenerated
    resumed = _load(out)
    assert not stale.exists()  # the killed write's leftover was cleaned up
    assert np.array_equal(resumed["arr_0"], reference["arr_0"])
    assert np.array_equal(resumed["labels"], reference["labels"])


def test_shards_of_other_settings_or_another_checkpoint_are_never_mixed_in(gpt, tensorar, vq, tmp_path):
    """A resume reuses shards only when everything that made them matches; otherwise it starts fresh."""
    out = tmp_path / "s.npz"
    cfg = SamplingConfig(num_samples=6, seed=0, shard_size=4)
    sample_to(gpt, vq.decode, out, cfg, PLAIN, _single(), batch_size=4, keep_shards=True, progress=False,
                 identity={"model": {"sha256": "aaa"}})
    shard_path(shard_dir_for(out), 1).unlink()  # a killed job: shard 1 missing
    other_seed = SamplingConfig(num_samples=6, seed=1, shard_size=4)
    stats = sample_to(gpt, vq.decode, out, other_seed, PLAIN, _single(), batch_size=4, progress=False,
                         identity={"model": {"sha256": "aaa"}})
    assert stats["shards_reused"] == 0 and stats["images_generated"] == 6
    sample_to(gpt, vq.decode, tmp_path / "fresh.npz", other_seed, PLAIN, _single(), batch_size=4,
                         progress=False)
    assert np.array_equal(_load(out)["arr_0"], _load(tmp_path / "fresh.npz")["arr_0"])
    # The same settings but another checkpoint (retrained at the same path): the old shards are dropped.
    sample_to(gpt, vq.decode, out, cfg, PLAIN, _single(), batch_size=4, keep_shards=True, progress=False,
                 identity={"model": {"sha256": "aaa"}})
    shard_path(shard_dir_for(out), 1).unlink()
    stats = sample_to(tensorar, vq.decode, out, cfg, PLAIN, _single(), batch_size=4, keep_shards=True,
                         progress=False, identity={"model": {"sha256": "bbb"}})
    assert stats["shards_reused"] == 0
    sample_to(tensorar, vq.decode, tmp_path / "t.npz", cfg, PLAIN, _single(), batch_size=4, progress=False)
    assert np.array_equal(_load(out)["arr_0"], _load(tmp_path / "t.npz")["arr_0"])


def test_a_second_sampling_job_on_the_same_output_fails_fast(gpt, vq, tmp_path):
    from tensorar.fileio import FolderLocked, exclusive_lock

    out = tmp_path / "s.npz"
    with exclusive_lock(shard_dir_for(out), "sampling job"):  # the first job, still running
        with pytest.raises(FolderLocked, match=f"pid {os.getpid()}"):
            sample_to(gpt, vq.decode, out, SamplingConfig(num_samples=2), PLAIN, _single(), progress=False)


def test_cli_refuses_out_of_range_values(files, tmp_path):
    common = ["--ckpt", files["gpt"], "--vq", files["vq"], "--out", str(tmp_path / "x.npz"), "--num-samples", "2"]
    for flag, value, message in (("--temperature", "-1", "must be > 0"), ("--top-p", "0", "must be > 0"),
                                 ("--top-p", "1.5", "must be <= 1"), ("--cfg-scale", "-2", "must be >= 0"),
                                 ("--top-k", "-5", "must be >= 0"), ("--batch-size", "0", "positive integer"),
                                 ("--image-size", "0", "must be >= 1"), ("--num-samples", "0", "must be >= 1")):
        with pytest.raises(SystemExit):
            main([*common, flag, value])


# ----- figures ------------------------------------------------------------------------------------
def test_image_grid_layout():
    images = np.stack([np.full((3, 2, 3), i, np.uint8) for i in range(5)])  # (5, H=3, W=2, 3)
    grid = image_grids.image_grid(images, ncols=2, pad=1, pad_value=255)
    assert grid.shape == (3 * (3 + 1) + 1, 2 * (2 + 1) + 1, 3)
    assert (grid[1:4, 1:3] == 0).all() and (grid[1:4, 4:6] == 1).all() and (grid[5:8, 1:3] == 2).all()
    assert (grid[9:12, 4:6] == 255).all()  # the empty sixth cell


def test_refinement_frames_commit_and_draft():
    tokens = torch.arange(6).view(1, 6) + 10  # (1, T=6)
    drafts = torch.full((1, 6, 3), -1)
    for t in range(6):
        n = min(3, 6 - t)
        drafts[0, t, :n] = torch.tensor([10 + t, 50 + t, 60 + t])[:n]  # slot 0 is the committed token
    frames, shown = image_grids.refinement_frames(tokens, drafts, [0, 2, 5])
    assert frames.shape == shown.shape == (1, 4, 6)
    assert frames[0, 1, :5].tolist() == [10, 11, 12, 52, 62]  # committed 0..2, drafts for 3 and 4
    assert shown[0, 1].tolist() == [True] * 5 + [False]
    assert shown[0, 2].all() and torch.equal(frames[0, 3], tokens[0])  # last step; finished sample
    assert shown[0, 0].tolist() == [True] * 3 + [False] * 3


def test_cli_gpt_writes_npz_stats_and_grid(files, tmp_path):
    out, stats_path, grid = tmp_path / "s.npz", tmp_path / "s.json", tmp_path / "grid.png"
    main(["--ckpt", files["gpt"], "--vq", files["vq"], "--out", str(out), "--num-samples", "9",
          "--cfg-scale", "2.0", "--top-k", "20", "--batch-size", "4", "--shard-size", "5",
          "--image-size", "12", "--device", "cpu", "--stats-json", str(stats_path), "--grid-png", str(grid)])
    samples = _load(out)
    assert samples["arr_0"].shape == (9, 12, 12, 3) and samples["arr_0"].dtype == np.uint8
    assert samples["labels"].dtype == np.int64
    stats = json.loads(stats_path.read_text())
    assert stats["options"]["cfg_scale"] == 2.0 and stats["config"]["image_size"] == 12
    assert stats["model"]["kind"] == "backbone" and stats["images_generated"] == 9
    assert stats["model"]["parameters"] == stats["model"]["base_parameters"] == sum(
        p.numel() for p in torch.load(files["gpt"], weights_only=True)["model"].values())
    assert stats["generate_images_per_s"] > 0 and stats["decode_images_per_s"] > 0
    assert stats["grid_labels"] == sorted(samples["labels"].tolist())
    png = np.asarray(Image.open(grid))
    assert png.shape == (2 + 2 * (12 + 2), 2 + 8 * (12 + 2), 3)  # 9 samples: 8 per row, 2 rows
    assert np.array_equal(png[2:14, 2:14], samples["arr_0"][np.argsort(samples["labels"], kind="stable")[0]])
    with pytest.raises(SystemExit, match="TensorAR"):
        main(["--ckpt", files["gpt"], "--vq", files["vq"], "--out", str(tmp_path / "x.npz"),
              "--num-samples", "2", "--draft-noise", "schedule", "--device", "cpu"])


def test_cli_tensorar_drafts_png(files, tmp_path):
    out, strip = tmp_path / "s.npz", tmp_path / "drafts.png"
    main(["--ckpt", files["tensorar"], "--vq", files["vq"], "--out", str(out), "--num-samples", "5",
          "--draft-noise", "schedule", "--device", "cpu", "--drafts-png", str(strip)])
    samples = _load(out)
    assert samples["arr_0"].shape == (5, 8, 8, 3)
    png = np.asarray(Image.open(strip))
    columns = len(image_grids.refinement_steps(GRID * GRID, 8)) + 1
    assert png.shape == (2 + 4 * (8 + 2), 2 + columns * (8 + 2), 3)  # 4 rows of samples
    for row in range(4):
        top = 2 + row * 10
        first, last = png[top : top + 8, 2:10], png[top : top + 8, 2 + (columns - 1) * 10 : (columns) * 10]
        assert np.array_equal(last, samples["arr_0"][row])  # the strip ends with the very sample
        # Step 0 shows only the first window (K of 16 tokens, all in row 0 of the 4x4 grid): the
        # remaining token rows (pixel rows 2..7) are grey.
        assert (first[2:] == image_grids.GREY).all() and not (first[:2] == image_grids.GREY).all()


@pytest.mark.slow
def test_torchrun_two_processes_match_single_process(files, tmp_path):
    import subprocess
    import sys

    args = ["-m", "tensorar", "sample", "--ckpt", files["gpt"], "--vq", files["vq"], "--num-samples", "11",
            "--shard-size", "3", "--device", "cpu", "--cfg-scale", "2.0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two, stats = tmp_path / "two.npz", tmp_path / "two.json"
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    *args, "--batch-size", "2", "--out", str(two), "--stats-json", str(stats)],
                   check=True, env=env, cwd=tmp_path, timeout=300)
    main(args[3:] + ["--batch-size", "5", "--out", str(tmp_path / "one.npz")])
    a, b = _load(tmp_path / "one.npz"), _load(two)
    assert np.array_equal(a["arr_0"], b["arr_0"]) and np.array_equal(a["labels"], b["labels"])
    s = json.loads(stats.read_text())
    assert s["world_size"] == 2 and s["images_generated"] == 11 and s["shards_generated"] == 4


@pytest.mark.slow
def test_cli_compiled_step_gives_the_eager_samples(files, tmp_path):
    common = ["--ckpt", files["tensorar"], "--vq", files["vq"], "--num-samples", "6", "--cfg-scale", "2.0",
              "--batch-size", "3", "--device", "cpu"]
    main(common + ["--out", str(tmp_path / "eager.npz")])
    main(common + ["--out", str(tmp_path / "compiled.npz"), "--compile-step", "--stats-json", str(tmp_path / "s.json")])
    eager, compiled = _load(tmp_path / "eager.npz"), _load(tmp_path / "compiled.npz")
    assert np.array_equal(compiled["arr_0"], eager["arr_0"]) and np.array_equal(compiled["labels"], eager["labels"])
    assert json.loads((tmp_path / "s.json").read_text())["config"]["compile_step"] is True


def test_tf32_flag_is_cuda_only_and_a_no_op_on_cpu():
    import torch

    from tensorar.sampling.options import RunOptions

    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    RunOptions(tf32="on" if not before[0] else "off").apply_tf32(torch.device("cpu"))
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
    with pytest.raises(ValueError, match="--tf32"):
        RunOptions(tf32="yes")
