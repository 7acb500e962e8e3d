"""tensorar time_sampling: several models timed in one job, interleaved round by round in a seeded order;
the TIMING.json contract (per-repeat seconds, latency and throughput with and without decoding, their
spread, the paired per-round ratios), warm-up rounds discarded, and the model block `sample` writes.

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
from tensorar.sampling.sampler import Sampler
from tensorar.stages import sample
from tensorar.stages.time_sampling import (
    main,
    named_checkpoints,
    paired_ratios,
    round_orders,
    spread,
    summarise,
)

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


def run(files, tmp_path, *ckpts, extra=()) -> dict:
    out = tmp_path / "timing.json"
    named = [f"{name}={files[name]}" for name in ckpts or ("gpt",)]
    main([*(a for n in named for a in ("--ckpt", n)), "--vq", files["vq"], "--out", str(out),
          "--batch-size", str(BATCH), "--warmup", str(WARMUP), "--repeats", str(REPEATS), "--device", "cpu",
          "--threads", "1", "--no-progress", *extra])
    return json.loads(out.read_text())


def test_spread_is_mean_and_sample_sd():
    s = spread([1.0, 2.0, 4.0])
    assert s["values"] == [1.0, 2.0, 4.0] and s["mean"] == pytest.approx(7 / 3)
    assert s["std"] == pytest.approx(statistics.stdev([1.0, 2.0, 4.0]))  # ddof=1
    assert spread([3.0]) == {"mean": 3.0, "std": None, "values": [3.0]}  # one repeat: no spread (JSON null)


def test_summarise_per_image_latency_and_throughput_with_and_without_decoding():
    t = summarise([2.0, 4.0], [1.0, 1.0], batch_size=10)
    assert t["latency_s"]["values"] == [0.3, 0.5] and t["generate_latency_s"]["values"] == [0.2, 0.4]
    assert t["images_per_s"]["values"] == pytest.approx([10 / 3, 2.0])  # generation + decoding (Fig. 4)
    assert t["generation_images_per_s"]["values"] == [5.0, 2.5]


def test_round_orders_are_seeded_permutations_that_vary():
    orders = round_orders(["a", "b", "c"], 12, seed=0)
    assert all(sorted(o) == ["a", "b", "c"] for o in orders)
    assert orders == round_orders(["a", "b", "c"], 12, seed=0) != round_orders(["a", "b", "c"], 12, seed=1)
    assert len({o[0] for o in orders}) == 3  # no model is always first


def test_paired_ratios_are_per_round_against_the_reference():
    blocks = {"base": summarise([1.0, 2.0, 1.0], [0.0, 0.0, 0.0], 1), "tar": summarise([1.5, 2.0, 1.2], [0.0] * 3, 1)}
    paired = paired_ratios(blocks, "base")
    assert set(paired) == {"tar"} and paired["tar"]["latency_ratio"] == pytest.approx([1.5, 1.0, 1.2])
    assert paired["tar"]["median"] == pytest.approx(1.2)


def test_named_checkpoints_are_checked():
    assert named_checkpoints(["base=a.pt", "tensorar-default=b.pt"]) == {"base": "a.pt", "tensorar-default": "b.pt"}
    for bad in (["a.pt"], ["base="], ["x y=a.pt"], ["base=a.pt", "base=b.pt"]):
        with pytest.raises(SystemExit):
            named_checkpoints(bad)


def test_models_are_interleaved_round_by_round(files, tmp_path, monkeypatch):
    batches = []
    real = Sampler.class_images

    def counted(sampler, labels, indices, *args, **kwargs):
        batches.append((type(sampler.model).__name__, indices.tolist(), labels.tolist()))
        return real(sampler, labels, indices, *args, **kwargs)

    monkeypatch.setattr(Sampler, "class_images", counted)
    t = run(files, tmp_path, "gpt", "tensorar", extra=("--order-seed", "3"))
    rounds = WARMUP + REPEATS
    assert t["order"] == round_orders(["gpt", "tensorar"], rounds, 3) and t["order_seed"] == 3
    # Round r runs batch r of every model, in that round's order, with the same labels: the pairs.
    kinds = {"gpt": "GPT", "tensorar": "TensorAR"}
    assert [b[0] for b in batches] == [kinds[n] for order in t["order"] for n in order]
    for r in range(rounds):
        pair = batches[2 * r: 2 * r + 2]
        assert pair[0][1] == pair[1][1] == list(range(r * BATCH, (r + 1) * BATCH))
        assert pair[0][2] == pair[1][2]
    assert t["reference"] == "gpt" and set(t["paired"]) == {"tensorar"}
    ratios = t["paired"]["tensorar"]["latency_ratio"]
    assert ratios == pytest.approx([a / b for a, b in zip(t["models"]["tensorar"]["latency_s"]["values"],
                                                          t["models"]["gpt"]["latency_s"]["values"])])


def test_timing_json_contract(files, tmp_path):
    t = run(files, tmp_path, "gpt", extra=("--cfg-scale", "2.0", "--seed", "3"))
    assert {"batch_size", "warmup", "repeats", "threads", "device", "torch", "models", "order", "paired"} <= set(t)
    assert (t["batch_size"], t["warmup"], t["repeats"], t["threads"]) == (BATCH, WARMUP, REPEATS, 1)
    assert t["device"] == "cpu" and t["torch"] == torch.__version__
    assert t["options"]["cfg_scale"] == 2.0 and t["config"]["seed"] == 3 and "num_samples" not in t["config"]
    m = t["models"]["gpt"]
    assert m["model"]["kind"] == "backbone" and m["model"]["parameters"] == m["model"]["base_parameters"]
    assert len(m["generate_s"]) == len(m["decode_s"]) == REPEATS
    assert all(s > 0 for s in m["generate_s"] + m["decode_s"])
    for key in ("latency_s", "generate_latency_s", "images_per_s", "generation_images_per_s"):
        block = m[key]
        assert set(block) == {"mean", "std", "values"} and len(block["values"]) == REPEATS
        assert block["mean"] == pytest.approx(statistics.fmean(block["values"]))
        assert block["std"] == pytest.approx(statistics.stdev(block["values"]))
    per_image = [(g + d) / BATCH for g, d in zip(m["generate_s"], m["decode_s"])]
    assert m["latency_s"]["values"] == pytest.approx(per_image)
    assert m["generate_latency_s"]["values"] == pytest.approx([g / BATCH for g in m["generate_s"]])
    assert m["images_per_s"]["values"] == pytest.approx([1 / p for p in per_image])
    assert m["generation_images_per_s"]["values"] == pytest.approx([BATCH / g for g in m["generate_s"]])


def test_tensorar_checkpoint_and_the_samplers_model_block(files, tmp_path):
    t = run(files, tmp_path, "tensorar", extra=("--draft-noise", "schedule"))
    m = t["models"]["tensorar"]
    assert m["model"]["kind"] == "tensorar" and m["model"]["k"] == K
    assert m["model"]["parameters"] > m["model"]["base_parameters"]
    # The same "model" block as the sampler's stats JSON, which the tables read parameters from.
    stats = tmp_path / "stats.json"
    sample.main(["--ckpt", files["tensorar"], "--vq", files["vq"], "--out", str(tmp_path / "s.npz"),
                 "--num-samples", "1", "--device", "cpu", "--stats-json", str(stats)])
    assert m["model"] == json.loads(stats.read_text())["model"]


def test_plain_checkpoint_refuses_draft_noise_and_bad_counts(files, tmp_path):
    with pytest.raises(SystemExit):
        run(files, tmp_path, "gpt", extra=("--draft-noise", "schedule"))
    with pytest.raises(SystemExit):
        main(["--ckpt", f"gpt={files['gpt']}", "--vq", files["vq"], "--out", str(tmp_path / "x.json"),
              "--repeats", "0"])
