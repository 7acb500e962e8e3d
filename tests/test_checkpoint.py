"""Reading checkpoints safely, loading official LlamaGen layouts strictly, and our own round trip."""
from __future__ import annotations

import argparse

import pytest
import torch

from tensorar.checkpoint import (
    CheckpointMismatchError,
    UnreadableCheckpoint,
    read_checkpoint,
)
from tensorar.models import llamagen
from tensorar.models.llamagen import GPTConfig
from tensorar.models.loading import load_model, save_model

TINY = GPTConfig(dim=64, n_layer=2, n_head=4, vocab_size=512, num_classes=10, multiple_of=256)


@pytest.fixture(scope="module")
def tiny_ref(llamagen_ref):
    return torch.load(llamagen_ref / "gpt_tiny_c2i_ref.pt", weights_only=True)


def _llamagen_with_cache_buffers(sd: dict) -> dict:
    """What LlamaGen's state_dict() looks like after setup_caches(): per-layer k/v cache buffers."""
    out = dict(sd)
    for i in range(TINY.n_layer):
        out[f"layers.{i}.attention.kv_cache.k_cache"] = torch.zeros(2, 4, 24, 16)
        out[f"layers.{i}.attention.kv_cache.v_cache"] = torch.zeros(2, 4, 24, 16)
    out["freqs_cis"] = torch.zeros(257, 8, 2)
    return out


LAYOUTS = {
    "model": lambda sd: {"model": sd},
    "state_dict": lambda sd: {"state_dict": sd},
    "module": lambda sd: {"module": sd},
    "bare_fsdp_consolidated": lambda sd: sd,
    "ddp_prefixed": lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}},
    "with_kv_cache_buffers": lambda sd: {"model": _llamagen_with_cache_buffers(sd)},
    "training_ckpt_with_args": lambda sd: {
        "model": sd, "optimizer": {}, "steps": 10, "args": argparse.Namespace(gpt_model="GPT-B", lr=1e-4)},
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_official_layouts_load_strictly_and_give_reference_logits(tmp_path, tiny_ref, layout, monkeypatch):
    monkeypatch.setitem(llamagen.GPT_MODELS, "GPT-tiny-ref", TINY)
    path = tmp_path / "ckpt.pt"
    torch.save(LAYOUTS[layout](tiny_ref["state_dict"]), path)
    model = load_model(path, "llamagen", "GPT-tiny-ref").eval()
    with torch.no_grad():
        logits, _ = model(tiny_ref["tokens"], tiny_ref["labels"])
    torch.testing.assert_close(logits, tiny_ref["logits_full"], atol=1e-5, rtol=0)


def test_mismatch_lists_missing_unexpected_and_wrong_shape(tmp_path, tiny_ref, monkeypatch):
    monkeypatch.setitem(llamagen.GPT_MODELS, "GPT-tiny-ref", TINY)
    sd = dict(tiny_ref["state_dict"])
    sd.pop("norm.weight")
    sd["extra.weight"] = torch.zeros(3)
    sd["layers.0.attention.wo.weight"] = torch.zeros(64, 32)
    path = tmp_path / "bad.pt"
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointMismatchError) as err:
        load_model(path, "llamagen", "GPT-tiny-ref")
    msg = str(err.value)
    assert "missing (1): norm.weight" in msg
    assert "unexpected (1): extra.weight" in msg
    assert "layers.0.attention.wo.weight: checkpoint (64, 32) vs model (64, 64)" in msg


class _Arbitrary:  # a class that weights_only loading must refuse
    pass


def test_unsafe_pickle_refused_unless_opted_in(tmp_path, monkeypatch):
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "extra": _Arbitrary()}, path)
    monkeypatch.delenv("TENSORAR_ALLOW_UNSAFE_PICKLE", raising=False)
    with pytest.raises(RuntimeError, match="TENSORAR_ALLOW_UNSAFE_PICKLE"):
        read_checkpoint(path)
    assert isinstance(read_checkpoint(path, allow_unsafe_pickle=True)["extra"], _Arbitrary)


def test_missing_file_names_path_and_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="c2i_B_256.pt.*FoundationVision/LlamaGen|FoundationVision/LlamaGen"):
        load_model(tmp_path / "c2i_B_256.pt", "llamagen", "GPT-B")


def test_our_checkpoint_round_trips_with_config(tiny, tmp_path):
    model = tiny.gpt()
    save_model(tmp_path / "m.pt", model, step=7)
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.config == model.config and loaded.family == "llamagen"
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("content", [b"", b"\x00" * 10, bytes(range(256)) * 4], ids=["empty", "zeros", "garbage"])
def test_broken_files_are_named_and_never_advise_unsafe_loading(tmp_path, content):
    path = tmp_path / "final.pt"
    path.write_bytes(content)
    with pytest.raises(UnreadableCheckpoint, match="final.pt cannot be read") as err:
        read_checkpoint(path)
    assert "UNSAFE" not in str(err.value)


def test_truncated_checkpoint_is_unreadable(tiny, tmp_path):
    save_model(tmp_path / "m.pt", tiny.gpt())
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "m.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableCheckpoint, match="truncated"):
        load_model(tmp_path / "m.pt")


def test_ema_weights_requested_but_absent_is_an_error(tiny, tmp_path):
    save_model(tmp_path / "m.pt", tiny.gpt())
    with pytest.raises(ValueError, match="no EMA weights"):
        load_model(tmp_path / "m.pt", use_ema=True)
