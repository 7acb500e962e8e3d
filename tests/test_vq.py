"""The VQ tokenizer: official LlamaGen layout and numerics, API round trips, strict loading."""
from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tensorar.models.vq import (
    USAGE_WINDOW,
    VQ_MODELS,
    VQConfig,
    VQModel,
    load_vq,
    vq_checkpoint,
)
from tensorar.stages.train_tokenizer import latent_vectors, reset_codes
from tensorar.stages.train_tokenizer import main as train_tokenizer_main

TINY = VQConfig(codebook_size=16, codebook_embed_dim=4, encoder_ch_mult=(1, 2), decoder_ch_mult=(1, 2),
                z_channels=8, base_channels=8, num_res_blocks=1, norm_groups=4)


def test_vq16_state_dict_matches_official(llamagen_ref):
    ref = json.loads((llamagen_ref / "vq_ds16.json").read_text())
    with torch.device("meta"):
        model = VQModel(VQ_MODELS["VQ-16"])
    ours = {k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
            for k, v in model.state_dict().items()}
    theirs = {k: {"shape": v["shape"], "dtype": v["dtype"]} for k, v in ref["state_dict"].items()}
    assert ours == theirs
    buffers = {k for k, v in ref["state_dict"].items() if v["kind"] == "buffer"}
    assert buffers == {name for name, _ in model.named_buffers()} == {"quantize.codebook_used"}
    assert model.num_parameters() == ref["num_parameters"]
    for key in ("codebook_size", "codebook_embed_dim", "codebook_l2_norm", "z_channels", "commit_loss_beta"):
        assert getattr(VQ_MODELS["VQ-16"], key) == ref["config"][key]
    assert list(VQ_MODELS["VQ-16"].encoder_ch_mult) == ref["config"]["encoder_ch_mult"]


def test_parity_with_official_small_model(llamagen_ref):
    ref = torch.load(llamagen_ref / "vq_small_ref.pt", weights_only=True)
    config = VQConfig(**{k: v for k, v in ref["config"].items()})  # remaining fields: LlamaGen defaults
    model = VQModel(config).eval()
    model.load_state_dict({k: v.float() for k, v in ref["state_dict_fp16"].items()}, strict=True)
    B, D, h, w = ref["qzshape"]
    with torch.no_grad():
        quant, indices, _ = model.quantize_image(ref["x"])
        decoded = model.decode(ref["indices"].reshape(B, h, w))
    assert torch.equal(indices.flatten(), ref["indices"])  # flat, row-major (b, h, w)
    assert torch.equal(model.encode(ref["x"]), ref["indices"].reshape(B, h, w))
    # quant = z + (e - z) in fp32: equal to the reference up to one rounding step (torch 2.13 vs ours).
    torch.testing.assert_close(quant, ref["quant"], rtol=0, atol=1e-6)
    torch.testing.assert_close(decoded, ref["decoded_from_indices"], rtol=0, atol=1e-4)


def test_encode_decode_round_trip_and_losses():
    torch.manual_seed(0)
    model = VQModel(TINY)
    x = torch.rand(3, 3, 8, 8) * 2 - 1
    model.eval()
    indices = model.encode(x)
    assert indices.shape == (3, 4, 4) and indices.dtype == torch.long
    assert 0 <= indices.min() and indices.max() < TINY.codebook_size
    with torch.no_grad():
        quant, indices2, _ = model.quantize_image(x)
        z = F.normalize(model.quant_conv(model.encoder(x)), dim=1)  # (B, D, h, w)
        codebook = F.normalize(model.quantize.embedding.weight, dim=-1)  # (K, D)
    # Nearest code by cosine similarity (the codebook and latents are l2-normalised).
    expected = torch.einsum("bdhw,kd->bhwk", z, codebook).argmax(-1)
    assert torch.equal(indices, expected) and torch.equal(indices, indices2)
    images = model.decode(indices)
    assert images.shape == x.shape
    torch.testing.assert_close(images, model.decode_quant(quant), rtol=0, atol=1e-5)

    model.train()
    recon, losses = model(x)
    assert recon.shape == x.shape
    assert set(losses) == {"loss", "recon", "codebook", "commit"}
    torch.testing.assert_close(losses["commit"], TINY.commit_loss_beta * losses["codebook"])
    losses["loss"].backward()
    # Straight-through estimator: the reconstruction loss reaches the encoder; the codebook learns too.
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0
    assert model.quantize.embedding.weight.grad.abs().sum() > 0


def test_usage_window_only_updates_in_training():
    model = VQModel(TINY)
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    assert model.state_dict()["quantize.codebook_used"].shape == (USAGE_WINDOW,)
    model.eval()
    model(x)
    assert model.quantize.codebook_used.abs().sum() == 0
    model.train()
    model(x)
    recent = model.quantize.codebook_used[-2 * 16:].long()  # 2 images x 4x4 tokens, newest last
    assert torch.equal(recent, model.encode(x).flatten())


def test_load_vq_ours_and_official_format(tmp_path):
    model = VQModel(VQ_MODELS["VQ-toy"])
    ours = tmp_path / "vq.pt"
    torch.save(vq_checkpoint(model, step=3), ours)
    loaded = load_vq(ours)
    assert loaded.config == model.config and not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    # A JSON round trip of the config (lists instead of tuples) gives the same frozen config.
    assert VQConfig.from_dict(json.loads(json.dumps(asdict(model.config)))) == model.config

    official = tmp_path / "official.pt"
    torch.save({"model": model.state_dict()}, official)  # LlamaGen's layout: no config
    with pytest.raises(ValueError, match="preset"):
        load_vq(official)
    assert load_vq(official, preset="VQ-toy").config == VQ_MODELS["VQ-toy"]
    with pytest.raises(ValueError, match="differs from preset"):
        load_vq(ours, preset="VQ-16")


def test_strict_load_lists_every_mismatch(tmp_path):
    sd = VQModel(TINY).state_dict()
    del sd["decoder.conv_out.bias"]
    sd["encoder.extra.weight"] = torch.zeros(1)
    sd["quantize.embedding.weight"] = torch.zeros(32, 4)
    path = tmp_path / "bad.pt"
    torch.save({"config": asdict(TINY), "model": sd}, path)
    with pytest.raises(RuntimeError) as err:
        load_vq(path)
    msg = str(err.value)
    assert "missing (1): decoder.conv_out.bias" in msg
    assert "unexpected (1): encoder.extra.weight" in msg
    assert "wrong shape (1): quantize.embedding.weight: checkpoint (32, 4) vs model (16, 4)" in msg


def test_missing_checkpoint_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_vq(tmp_path / "vq_ds16_c2i.pt", preset="VQ-16")
    assert "FoundationVision/LlamaGen" in str(err.value) and "vq_ds16_c2i.pt" in str(err.value)


def test_config_validation():
    with pytest.raises(ValueError, match="GroupNorm"):
        VQConfig(base_channels=24)
    with pytest.raises(ValueError, match="VQConfig: unknown keys"):
        VQConfig.from_dict({"codebook_size": 4, "ch": 128})
    assert VQ_MODELS["VQ-16"].downsample == 16 and VQ_MODELS["VQ-toy"].downsample == 2


def image_folders(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("0", "1"):
            (tmp_path / split / cls).mkdir(parents=True)
            for j in range(3):
                Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
                    tmp_path / split / cls / f"{j}.png")


def test_train_tokenizer_writes_loadable_checkpoint_deterministically(tmp_path):
    image_folders(tmp_path)
    for run in ("a", "b"):
        train_tokenizer_main(["--data", str(tmp_path / "train"), "--val-data", str(tmp_path / "val"),
                       "--out", str(tmp_path / run / "VQ.pt"), "--steps", "4", "--batch-size", "4",
                       "--restart-every", "2", "--seed", "1"])
    metrics = json.loads((tmp_path / "a" / "VQ.json").read_text())
    assert metrics["steps"] == 4 and metrics["num_val_images"] == 6
    assert 0 < metrics["val_recon_mse"] < 4 and 0 < metrics["codebook_usage"] <= 1
    assert 1 <= metrics["codebook_perplexity"] <= VQ_MODELS["VQ-toy"].codebook_size
    a, b = load_vq(tmp_path / "a" / "VQ.pt"), load_vq(tmp_path / "b" / "VQ.pt")
    assert a.config == VQ_MODELS["VQ-toy"]
    assert torch.load(tmp_path / "a" / "VQ.pt", weights_only=True)["step"] == 4
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_reset_codes_reseeds_dead_codes_from_encoder_outputs():
    torch.manual_seed(0)
    model = VQModel(TINY)
    opt = torch.optim.AdamW(model.parameters())
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    model(x)[1]["loss"].backward()
    opt.step()
    weight = model.quantize.embedding.weight
    before = weight.detach().clone()
    dead = torch.tensor([1, 5])
    reset_codes(model, opt, dead, x, torch.Generator().manual_seed(0))
    with torch.no_grad():
        z = latent_vectors(model, x)  # (B*h*w, D)
    for code in dead:
        assert (z == weight[code]).all(-1).any()  # now sits exactly on one of the encoder outputs
    keep = torch.ones(TINY.codebook_size, dtype=torch.bool)
    keep[dead] = False
    assert torch.equal(weight[keep], before[keep])
    assert opt.state[weight]["exp_avg"][dead].abs().sum() == 0
    assert opt.state[weight]["exp_avg"][keep].abs().sum() > 0


def test_train_tokenizer_trains_an_lfq_too(tmp_path):
    from tensorar.models.lfq import LFQ_MODELS, LFQModel
    from tensorar.models.loading import load_tokenizer

    image_folders(tmp_path)
    train_tokenizer_main(["--data", str(tmp_path / "train"), "--val-data", str(tmp_path / "val"), "--preset", "LFQ-toy",
                          "--out", str(tmp_path / "LFQ.pt"), "--steps", "3", "--batch-size", "4"])
    tokenizer = load_tokenizer(tmp_path / "LFQ.pt")
    assert isinstance(tokenizer, LFQModel) and tokenizer.config == LFQ_MODELS["LFQ-toy"]
    assert tokenizer.encode(torch.zeros(1, 3, 16, 16)).shape == (1, 8, 8)
    assert json.loads((tmp_path / "LFQ.json").read_text())["codebook_size"] == 256
