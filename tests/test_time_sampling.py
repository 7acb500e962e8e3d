"""tensorar.time_sampling: the TIMING.json contract (per-repeat seconds, latency and throughput with their
spread), warm-up batches discarded, base and TensorAR checkpoints, and the model block `sample` writes.

Tiny models as in tests/test_sample.py: a GPT of dim 32, 2 layers, vocab 64, 5 classes, 4x4 token grid,
and a real VQModel with 64 codes.
"""
from __future__ import annotations

import json
import statistics

import pytest
import torch

from tensorar.models.loading import save_model
from tensorar.models.vq import vq_checkpoint
from tensorar.stages import sample, time_sampling
from tensorar.stages.time_sampling import main, spread, summarise

NUM_CLASSES, VOCAB, GRID, K = 5, 64, 4, 3
BATCH, WARMUP, REPEATS = 4, 1, 3


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny) -> dict:
    root = tmp_path_factory.mktemp("ckpts")
    gpt = tiny.gpt(vocab=VOCAB, classes=NUM_CLASSES, tokens=GRID * GRID)
    save_model(root / "gpt.pt", gpt)
    save_model(root / "tensorar.pt", tiny.tensorar(gpt, k=K))
    torch.save(vq_checkpoint(tiny.vq(codes=VOCAB)), root / "vq.pt")
    return {name: str(root / f"{name}.pt") for name in ("gpt", "tensorar", "vq")}


def run(files, tmp_path, ckpt="gpt", *extra) -> dict:
    out = tmp_path / f"{ckpt}.json"
    main(["--ckpt", files[ckpt], "--vq", files["vq"], "--out", str(out), "--batch-size", str(BATCH),
          "--warmup", str(WARMUP), "--repeats", str(REPEATS), "--device", "cpu", "--threads", "1",
          "--no-progress", *extra])
    return json.loads(out.read_text())


def test_spread_is_mean_and_sample_sd():
    s = spread([1.0, 2.0, 4.0])
    assert s["values"] == [1.0, 2.0, 4.0] and s["mean"] == pytest.approx(7 / 3)
    assert s["std"] == pytest.approx(statistics.stdev([1.0, 2.0, 4.0]))  # ddof=1
    assert spread([3.0]) == {"mean": 3.0, "std": None, "values": [3.0]}  # one repeat: no spread (JSON null)


def test_summarise_per_image_latency_and_throughput():
    t = summarise([2.0, 4.0], [1.0, 1.0], batch_size=10)
    assert t["latency_s"]["values"] == [0.3, 0.5] and t["generate_latency_s"]["values"] == [0.2, 0.4]
    assert t["images_per_s"]["values"] == [5.0, 2.5]


def test_timing_json_contract(files, tmp_path, monkeypatch):
    batches = []
    real = time_sampling.generate_images

    def counted(model, decode, labels, indices, *args, **kwargs):
        batches.append(indices.tolist())
        return real(model, decode, labels, indices, *args, **kwargs)

    monkeypatch.setattr(time_sampling, "generate_images", counted)
    t = run(files, tmp_path, "gpt", "--cfg-scale", "2.0", "--seed", "3")
    # Warm-up batches run (and are discarded); each batch holds its own samples of the seed.
    assert batches == [list(range(r * BATCH, (r + 1) * BATCH)) for r in range(WARMUP + REPEATS)]
    assert {"batch_size", "warmup", "repeats", "threads", "device", "torch", "model", "generate_s", "decode_s",
            "latency_s", "generate_latency_s", "images_per_s"} <= set(t)
    assert (t["batch_size"], t["warmup"], t["repeats"], t["threads"]) == (BATCH, WARMUP, REPEATS, 1)
    assert t["device"] == "cpu" and t["torch"] == torch.__version__
    assert t["options"]["cfg_scale"] == 2.0 and t["config"]["seed"] == 3 and "num_samples" not in t["config"]
    assert t["model"]["kind"] == "backbone" and t["model"]["parameters"] == t["model"]["base_parameters"]
    assert len(t["generate_s"]) == len(t["decode_s"]) == REPEATS
    assert all(s > 0 for s in t["generate_s"] + t["decode_s"])
    for key in ("latency_s", "generate_latency_s", "images_per_s"):
        block = t[key]
        assert set(block) == {"mean", "std", "values"} and len(block["values"]) == REPEATS
        assert block["mean"] == pytest.approx(statistics.fmean(block["values"]))
        assert block["std"] == pytest.approx(statistics.stdev(block["values"]))
    per_image = [(g + d) / BATCH for g, d in zip(t["generate_s"], t["decode_s"])]
    assert t["latency_s"]["values"] == pytest.approx(per_image)
    assert t["latency_s"]["mean"] == pytest.approx(statistics.fmean(per_image))
    assert t["generate_latency_s"]["values"] == pytest.approx([g / BATCH for g in t["generate_s"]])
    assert t["images_per_s"]["values"] == pytest.approx([BATCH / g for g in t["generate_s"]])
    assert all(r * lat == pytest.approx(1.0) for r, lat in zip(t["images_per_s"]["values"],
                                                               t["generate_latency_s"]["values"]))


def test_tensorar_checkpoint_and_the_samplers_model_block(files, tmp_path):
    t = run(files, tmp_path, "tensorar", "--draft-noise", "schedule")
    assert t["model"]["kind"] == "tensorar" and t["model"]["k"] == K
    assert t["model"]["parameters"] > t["model"]["base_parameters"]
    assert len(t["latency_s"]["values"]) == REPEATS
    # The same "model" block as the sampler's stats JSON, which the tables read parameters from.
    stats = tmp_path / "stats.json"
    sample.main(["--ckpt", files["tensorar"], "--vq", files["vq"], "--out", str(tmp_path / "s.npz"),
                 "--num-samples", "1", "--device", "cpu", "--stats-json", str(stats)])
    assert t["model"] == json.loads(stats.read_text())["model"]


def test_plain_checkpoint_refuses_draft_noise_and_bad_counts(files, tmp_path):
    with pytest.raises(SystemExit):
        run(files, tmp_path, "gpt", "--draft-noise", "schedule")
    with pytest.raises(SystemExit):
        main(["--ckpt", files["gpt"], "--vq", files["vq"], "--out", str(tmp_path / "x.json"), "--repeats", "0"])
