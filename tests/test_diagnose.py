"""Draft-copying diagnostics: the numbers mean what they say on tiny models and a tiny codes directory."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tensorar.data.conditions import LabelStore
from tensorar.decoding.sampling import SamplingOptions
from tensorar.models.loading import save_model
from tensorar.stages import diagnose

T, V, NUM_CLASSES, N = 16, 64, 5, 12
PLAIN = SamplingOptions()


@pytest.fixture
def models(tiny):
    """(TensorAR k=3 linear schedule around a copy of the base, the base)."""

    def build(trained: bool = False):
        base = tiny.gpt(vocab=V, classes=NUM_CLASSES, tokens=T)
        copy = tiny.gpt(vocab=V, classes=NUM_CLASSES, tokens=T)
        return tiny.tensorar(copy, k=3, trained=trained, schedule="linear"), base

    return build


def held_out():
    g = torch.Generator().manual_seed(1)
    return torch.randint(V, (N, T), generator=g), LabelStore(torch.randint(NUM_CLASSES, (N,), generator=g))


def test_at_init_slot0_ignores_drafts_and_equals_the_base_nll(models):
    model, base = models()
    codes, cond = held_out()
    out = diagnose.diagnose(model, base, codes, cond, num_samples=4, seed=0, batch_size=5, options=PLAIN, show=False)
    for condition in diagnose.DRAFT_CONDITIONS:
        assert out["slot0_ce"][condition] == pytest.approx(out["base_nll"], rel=1e-5)
    assert len(out["per_slot_ce"]["clean"]) == 3 and out["base_nll"] > 0


def test_trained_plugin_reads_its_drafts_and_copy_rate_is_batch_independent(models):
    model, base = models(trained=True)
    codes, cond = held_out()
    out = diagnose.diagnose(model, base, codes, cond, num_samples=6, seed=0, batch_size=4, options=PLAIN, show=False)
    ce = out["slot0_ce"]
    assert ce["clean"] != pytest.approx(ce["random"], rel=1e-3)
    for mode in ("none", "schedule"):
        rates = out["sampling"][mode]["draft_agreement"]
        assert len(rates) == 2 and all(0 <= r <= 1 for r in rates)
        assert out["sampling"][mode]["copy_rate"] == rates[0]
    again = diagnose.draft_agreement(model, cond, 6, 0, 6, PLAIN, False)
    assert again == out["sampling"]["none"]
    # The copy rate is the agreement of each committed token with the position-1 draft it was fed.
    g = torch.Generator().manual_seed(0)
    u = torch.rand(6, T, 3, 1, generator=g)
    _, drafts = model.generate(torch.arange(6) % NUM_CLASSES, uniforms=u, return_drafts=True)
    assert again["copy_rate"] == pytest.approx((drafts[:, 1:, 0] == drafts[:, :-1, 1]).double().mean().item())


def test_main_writes_json(models, tmp_path):
    model, base = models(trained=True)
    save_model(tmp_path / "tar.pt", model)
    save_model(tmp_path / "base.pt", base)
    codes_dir = tmp_path / "codes"
    codes_dir.mkdir()
    codes, cond = held_out()
    labels = cond.labels
    augmented = np.stack([codes.numpy(), np.roll(codes.numpy(), 1, axis=1)], axis=1).astype(np.int32)  # (N, A=2, T)
    np.save(codes_dir / "codes_00000.npy", augmented)
    np.save(codes_dir / "labels_00000.npy", labels.numpy().astype(np.int64))
    manifest = {"count": N, "num_augmentations": 2, "grid": [4, 4], "vocab_size": V, "num_classes": NUM_CLASSES,
                "complete": True, "shards": [{"codes": "codes_00000.npy", "labels": "labels_00000.npy", "count": N}]}
    (codes_dir / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "diag" / "d.json"
    diagnose.main(["--ckpt", str(tmp_path / "tar.pt"), "--base", str(tmp_path / "base.pt"), "--codes", str(codes_dir),
                   "--out", str(out), "--num-samples", "3", "--batch-size", "8"])
    result = json.loads(out.read_text())
    direct = diagnose.diagnose(model, base, codes, cond, num_samples=3, seed=0, batch_size=8, options=PLAIN,
                               show=False)
    assert result["base_nll"] == pytest.approx(direct["base_nll"])  # augmentation 0 was used
    assert result["slot0_ce"] == pytest.approx(direct["slot0_ce"])
    assert result["sampling"]["none"]["copy_rate"] == pytest.approx(direct["sampling"]["none"]["copy_rate"])
    with pytest.raises(ValueError, match="not a TensorAR"):
        diagnose.main(["--ckpt", str(tmp_path / "base.pt"), "--base", str(tmp_path / "base.pt"),
                       "--codes", str(codes_dir), "--out", str(out)])
