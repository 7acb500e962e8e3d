"""The toy feature network: ADM-shaped taps, resizing, checkpoint round trip, and a short training run."""
from __future__ import annotations

import json

import pytest
import torch

from tensorar.toy import digits as make_digits
from tensorar.toy.features import (
    ToyClassifier,
    ToyClassifierConfig,
    ToyFeatureExtractor,
)
from tensorar.stages import train_classifier


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy") / "digits"
    make_digits.build(out)
    return out


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    """A briefly trained classifier (a few seconds), through the CLI."""
    out = tmp_path_factory.mktemp("cls") / "CLS.pt"
    train_classifier.main(["--data", str(digits / "train"), "--val-data", str(digits / "val"),
                           "--out", str(out), "--steps", "40", "--batch-size", "32"])
    return out


def _extractor(seed: int = 0) -> ToyFeatureExtractor:
    torch.manual_seed(seed)
    return ToyFeatureExtractor(ToyClassifier(ToyClassifierConfig()))


def _images(b: int, h: int, w: int) -> torch.Tensor:
    return torch.randint(0, 256, (b, h, w, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(h * w))


@pytest.mark.parametrize("h, w", [(16, 16), (8, 8), (32, 32), (20, 20), (64, 48)])
def test_taps_have_adm_shapes_and_dtypes(h, w):
    ext = _extractor()
    cfg = ext.config
    feats = ext(_images(3, h, w))
    assert set(feats) == {"pool", "logits", "spatial"}
    assert feats["pool"].shape == (3, cfg.pool_dim)
    assert feats["logits"].shape == (3, 10)
    assert feats["spatial"].shape == (3, cfg.spatial_dim) == (3, 8 * 8 * 7)
    for v in feats.values():
        assert v.dtype == torch.float32 and v.device.type == "cpu" and torch.isfinite(v).all()
    assert ext.name == "toy-digits-classifier" and ext.comparable_with_paper is False


def test_spatial_is_the_mid_block_map_first_channels_in_nhwc_order():
    ext = _extractor()
    seen = {}
    ext.model.blocks[ext.config.spatial_block].register_forward_hook(lambda m, i, o: seen.update(out=o))
    feats = ext(_images(2, 16, 16))
    expected = seen["out"][:, :7].permute(0, 2, 3, 1).reshape(2, -1)  # (B, h*w*7) from (B, 7, h, w)
    torch.testing.assert_close(feats["spatial"], expected)
    assert not torch.equal(feats["spatial"], seen["out"][:, :7].reshape(2, -1))  # NCHW order would differ


def test_integer_upscaled_images_give_the_features_of_the_original():
    ext = _extractor()
    small = _images(4, 16, 16)
    big = small.repeat_interleave(4, dim=1).repeat_interleave(4, dim=2)  # (4, 64, 64, 3), nearest upscale
    a, b = ext(small), ext(big)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-5)


def test_features_do_not_depend_on_the_batch():
    ext = _extractor()
    images = _images(5, 16, 16)
    alone = ext(images[2:3])
    together = ext(images)
    for k in alone:
        torch.testing.assert_close(alone[k][0], together[k][2], rtol=1e-5, atol=1e-5)


def test_rejects_non_uint8_and_explains_a_missing_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        _extractor()(torch.zeros(1, 16, 16, 3))
    with pytest.raises(FileNotFoundError, match="train_classifier"):
        ToyFeatureExtractor.from_checkpoint(tmp_path / "nope.pt")


def test_brief_training_beats_chance_and_checkpoint_round_trips(trained, digits):
    report = json.loads(trained.with_suffix(".json").read_text())
    assert report["val_accuracy"] > 0.5  # chance is 0.1
    assert report["num_val"] == 359 and report["dataset_sha256"] == make_digits.verify(digits)["sha256"]

    ext = ToyFeatureExtractor.from_checkpoint(trained)
    images, labels, classes = train_classifier.load_uint8(digits / "val")
    assert classes == [str(c) for c in range(10)]
    acc = (ext(images)["logits"].argmax(-1) == labels).float().mean().item()
    assert acc == pytest.approx(report["val_accuracy"], abs=1e-6)


def test_training_is_seeded(digits):
    images, labels, _ = train_classifier.load_uint8(digits / "train")
    states = []
    for _ in range(2):
        torch.manual_seed(0)
        model = ToyClassifier(ToyClassifierConfig())
        train_classifier.train(model, images, labels, steps=3, batch_size=16, lr=1e-3, seed=0, progress=False)
        states.append(model.state_dict())
    for k in states[0]:
        torch.testing.assert_close(states[0][k], states[1][k], rtol=0, atol=0)
