"""The Open-MAGVIT2 LFQ tokenizer: official layout and numerics, code factorisation, checkpoint layouts."""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from tensorar.checkpoint import CheckpointMismatchError
from tensorar.models.lfq import (
    LFQ_MODELS,
    LFQConfig,
    LFQModel,
    lfq_checkpoint,
    lfq_config,
    load_lfq,
)

# Same location rule as tests/conftest.py (REFERENCE); the reference data is never copied into the repo.
REFERENCE = Path(os.environ.get("TENSORAR_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "reference"
TOY = LFQ_MODELS["LFQ-toy"]


@pytest.fixture(scope="module")
def omv_ref() -> Path:
    path = REFERENCE / "open_magvit2"
    if not path.is_dir():
        pytest.skip(f"Open-MAGVIT2 reference data not found at {path}")
    return path


def config_from_official(init_args: dict) -> LFQConfig:
    """The official VQModel(**init_args) -> our config (only the fields that shape the network)."""
    dd = init_args["ddconfig"]
    assert dd["in_channels"] == dd["out_ch"] == 3 and not dd["double_z"]
    assert init_args["embed_dim"] == dd["z_channels"] and init_args["n_embed"] == 2 ** dd["z_channels"]
    return LFQConfig(base_channels=dd["ch"], ch_mult=dd["ch_mult"], num_res_blocks=dd["num_res_blocks"],
                     z_channels=dd["z_channels"], factorized_bits=init_args.get("factorized_bits", (6, 12)))


def test_parity_with_official_tiny_tokenizer(omv_ref):
    ref = torch.load(omv_ref / "lfq_tiny_ref.pt", weights_only=True)
    model = LFQModel(config_from_official(ref["config"])).eval()
    assert list(model.state_dict()) == list(ref["state_dict"])  # same names, same order
    model.load_state_dict(ref["state_dict"], strict=True)
    assert model.num_parameters() == ref["n_params"]
    B, grid = 2, 4  # 64 px / 16
    with torch.no_grad():
        z = model.encoder(ref["images"])
        quant, codes, _ = model.quantize_image(ref["images"])
        decoded = model.decode(codes)
        decoded_from_quant = model.decode_quant(quant)
    # Another CPU's kernels round differently: z and decodes agree to ~2e-6 (bit-identical to the
    # official code run on the same machine); min |z| = 3.5e-3 leaves the signs well clear of that.
    torch.testing.assert_close(z, ref["z"], rtol=0, atol=1e-5)
    full = model.encode(ref["images"])
    assert full.dtype == torch.long and full.shape == (B, grid, grid)
    assert torch.equal(full, codes) and torch.equal(full.flatten(1), ref["indices_full"])  # row-major (h, w)
    pre, post = model.split_codes(full.flatten(1))
    assert torch.equal(pre, ref["indices_pre"]) and torch.equal(post, ref["indices_post"])
    assert torch.equal(model.join_codes(ref["indices_pre"], ref["indices_post"]), ref["indices_full"])
    assert torch.equal(quant, ref["quant"])
    assert torch.equal(model.quantize.lookup(full), ref["quant_from_indices"])
    assert torch.equal(model.quantize.lookup(full), ref["quant_from_full_indices"])
    torch.testing.assert_close(decoded, ref["dec_from_indices"], rtol=0, atol=1e-4)
    torch.testing.assert_close(decoded_from_quant, ref["dec_from_forward_quant"], rtol=0, atol=1e-4)


def test_lfq256_matches_official_manifest(omv_ref):
    tok = json.loads((omv_ref / "omv_manifest.json").read_text())["tokenizer"]
    config = LFQ_MODELS["LFQ-256"]
    assert config_from_official(tok["init_args_used"]) == config
    assert config.codebook_size == tok["init_args_used"]["n_embed"] == 2 ** 18 and config.downsample == 16
    with torch.device("meta"):
        model = LFQModel(config)
    assert sum(p.numel() for p in model.encoder.parameters()) == tok["encoder_param_count"] == 49_751_442
    assert sum(p.numel() for p in model.decoder.parameters()) == tok["decoder_param_count"] == 65_376_387
    assert model.num_parameters() == tok["param_count"] == 115_127_829
    ours = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()]
    assert ours == [(e["name"], e["shape"], e["dtype"]) for e in tok["state_dict"]]
    assert not list(model.buffers())  # LFQ's codebook/mask buffers are non-persistent officially
    # Every EMA copy the naming rule predicts maps back onto one of our keys (spec §4).
    flat = {k.replace(".", "") for k in model.state_dict()}
    ema_weights = [n for n in tok["ema_buffer_names_expected"]
                   if n.startswith(("model_ema.encoder", "model_ema.decoder"))]
    assert len(ema_weights) == len(flat) and {n.removeprefix("model_ema.") for n in ema_weights} == flat


def test_codes_are_little_endian_sign_bits_and_split_join_round_trips():
    torch.manual_seed(0)
    with torch.device("meta"):
        big = LFQModel(LFQ_MODELS["LFQ-256"])  # split/join need only the config
    full = torch.randint(0, 2 ** 18, (3, 16, 16))
    pre, post = big.split_codes(full)
    assert pre.max() < 64 and post.max() < 4096 and torch.equal(big.join_codes(pre, post), full)
    assert torch.equal(full, pre + post * 64)

    model = LFQModel(TOY).eval()
    z = torch.randn(2, TOY.z_channels, 3, 5)
    z[0, :, 0, 0] = 0.0  # exactly 0 quantises to -1, i.e. bit 0
    quant, codes, losses = model.quantize(z)
    assert torch.equal(quant, torch.where(z > 0, 1.0, -1.0))
    bits = (codes[:, None] >> torch.arange(TOY.z_channels)[None, :, None, None]) & 1  # (B, K, h, w)
    assert torch.equal(bits.bool(), z > 0) and codes[0, 0, 0] == 0
    assert torch.equal(model.quantize.lookup(codes), quant)  # planes are pre channels first, then post
    assert all(v == 0 for v in losses.values())  # eval mode: no auxiliary losses, as officially


def test_encode_decode_shapes_and_toy_trains():
    torch.manual_seed(0)
    model = LFQModel(TOY)
    assert 100_000 < model.num_parameters() < 150_000 and TOY.codebook_size == 256 and TOY.downsample == 2
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    codes = model.eval().encode(x)
    assert codes.shape == (4, 8, 8) and codes.dtype == torch.long and 0 <= codes.min() <= codes.max() < 256
    assert model.decode(codes).shape == x.shape

    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    history = []
    for _ in range(8):
        recon, losses = model(x)
        opt.zero_grad()
        losses["loss"].backward()
        if not history:
            # Straight-through estimator: the reconstruction loss reaches the encoder.
            assert recon.shape == x.shape and model.encoder.conv_in.weight.grad.abs().sum() > 0
            assert set(losses) == {"loss", "recon", "entropy", "per_sample_entropy", "codebook_entropy", "commit"}
            expected = losses["recon"] + 0.1 * losses["entropy"] + 0.25 * losses["commit"]
            torch.testing.assert_close(losses["loss"], expected)
            torch.testing.assert_close(losses["entropy"], losses["per_sample_entropy"] - losses["codebook_entropy"])
        opt.step()
        history.append(losses["loss"].item())
    assert torch.isfinite(torch.tensor(history)).all() and history[-1] < history[0] - 0.05


def _official_tokenizer_file(model: LFQModel) -> dict:
    """imagenet_256_L.ckpt's layout (spec §4): weights, their LitEma copies, loss modules."""
    sd = dict(model.state_dict())
    sd.update({f"model_ema.{k.replace('.', '')}": v + 1 for k, v in model.state_dict().items()})
    sd.update({"model_ema.decay": torch.tensor(0.999), "model_ema.num_updates": torch.tensor(-1, dtype=torch.int),
               "model_ema.lossdiscriminatormain0weight": torch.zeros(2, 3, 4, 4),
               "loss.discriminator.main.0.weight": torch.zeros(2, 3, 4, 4),
               "loss.discriminator.main.3.num_batches_tracked": torch.tensor(0),
               "loss.perceptual_loss.net.slice1.0.weight": torch.zeros(2, 3, 3, 3)})
    return {"state_dict": sd, "epoch": 3}


def _equal_weights(a: LFQModel, b: dict) -> bool:
    return all(torch.equal(v, b[k]) for k, v in a.state_dict().items())


def test_load_official_tokenizer_layout_raw_and_ema(tmp_path):
    source = LFQModel(TOY)
    path = tmp_path / "imagenet_256_L.ckpt"
    torch.save(_official_tokenizer_file(source), path)
    with pytest.raises(ValueError, match="preset='LFQ-256'"):
        load_lfq(path)
    raw = load_lfq(path, preset="LFQ-toy")
    assert not raw.training and _equal_weights(raw, source.state_dict())
    ema = load_lfq(path, preset="LFQ-toy", use_ema=True)
    assert _equal_weights(ema, {k: v + 1 for k, v in source.state_dict().items()})
    torch.save({"state_dict": source.state_dict()}, path)  # a file without EMA copies
    with pytest.raises(ValueError, match="no model_ema"):
        load_lfq(path, preset="LFQ-toy", use_ema=True)


def test_load_official_ar_layout(tmp_path):
    source = LFQModel(TOY)
    sd = {f"first_stage_model.{k}": v for k, v in source.state_dict().items()}
    sd.update({"transformer.pre_emb.weight": torch.zeros(16, 8), "transformer.head.1.weight": torch.zeros(16, 8),
               "transformer.spatial_blocks.0.attention.wqkv.weight": torch.zeros(24, 8)})
    path = tmp_path / "AR_256_B.ckpt"
    torch.save({"state_dict": sd}, path)
    assert _equal_weights(load_lfq(path, preset="LFQ-toy"), source.state_dict())
    with pytest.raises(ValueError, match="no EMA"):
        load_lfq(path, preset="LFQ-toy", use_ema=True)
    del sd["first_stage_model.decoder.conv_out.bias"]
    sd["first_stage_model.loss.logvar"] = torch.zeros(())
    torch.save({"state_dict": sd}, path)
    with pytest.raises(CheckpointMismatchError) as err:
        load_lfq(path, preset="LFQ-toy")
    assert "missing (1): decoder.conv_out.bias" in str(err.value) and "unexpected (1): loss.logvar" in str(err.value)


def test_strict_load_lists_every_mismatch(tmp_path):
    contents = _official_tokenizer_file(LFQModel(TOY))
    sd = contents["state_dict"]
    del sd["decoder.adaptive.0.gamma.bias"]
    sd["encoder.extra.weight"] = torch.zeros(1)
    sd["quantize.codebook"] = torch.zeros(256, 8)
    sd["model_ema.encoderbogusweight"] = torch.zeros(1)
    sd["encoder.conv_out.weight"] = torch.zeros(9, 32, 1, 1)
    path = tmp_path / "bad.ckpt"
    torch.save(contents, path)
    with pytest.raises(CheckpointMismatchError) as err:
        load_lfq(path, preset="LFQ-toy")
    msg = str(err.value)
    assert "missing (1): decoder.adaptive.0.gamma.bias" in msg
    assert "unexpected (3): encoder.extra.weight, model_ema.encoderbogusweight, quantize.codebook" in msg
    assert "wrong shape (1): encoder.conv_out.weight: checkpoint (9, 32, 1, 1) vs model (8, 32, 1, 1)" in msg


def test_our_checkpoints_round_trip(tmp_path):
    model = LFQModel(TOY)
    path = tmp_path / "lfq.pt"
    torch.save(lfq_checkpoint(model, step=5), path)
    loaded = load_lfq(path)
    assert loaded.config == TOY and not loaded.training and _equal_weights(loaded, model.state_dict())
    assert load_lfq(path, preset="LFQ-toy").config == TOY
    with pytest.raises(ValueError, match="differs from preset"):
        load_lfq(path, preset="LFQ-256")
    assert torch.load(path, weights_only=True)["tokenizer"] == "lfq"
    assert LFQConfig.from_dict(json.loads(json.dumps(asdict(TOY)))) == TOY


def test_missing_checkpoint_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_lfq(tmp_path / "imagenet_256_L.ckpt", preset="LFQ-256")
    assert "imagenet_256_L.ckpt" in str(err.value)
    assert "huggingface.co/TencentARC/Open-MAGVIT2-Tokenizer-256-resolution" in str(err.value)
    with pytest.raises(FileNotFoundError) as err:
        load_lfq(tmp_path / "AR_256_XL.ckpt", preset="LFQ-256")
    assert "AR_256_XL.ckpt" in str(err.value) and "TencentARC/Open-MAGVIT2-AR-XL-256-resolution" in str(err.value)


def test_config_validation():
    with pytest.raises(ValueError, match="factorized_bits"):
        LFQConfig(factorized_bits=(9, 8))
    with pytest.raises(ValueError, match="GroupNorm"):
        LFQConfig(base_channels=24)
    with pytest.raises(ValueError, match="LFQConfig: unknown keys"):
        LFQConfig.from_dict({"z_channels": 18, "ch": 128})
    with pytest.raises(KeyError, match="unknown LFQ preset"):
        lfq_config("LFQ-512")
    assert lfq_config("LFQ-toy", z_channels=6, factorized_bits=(3, 3)).codebook_size == 64
