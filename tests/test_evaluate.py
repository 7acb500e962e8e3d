"""`tensorar evaluate` end to end, the Inception extractor's plumbing, and `tensorar make_reference`."""
from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
from PIL import Image

from tensorar.errors import InputError
from tensorar.evaluation.inception import WEIGHTS_NAME, InceptionFeatureExtractor
from tensorar.fileio import atomic_save_npz
from tensorar.stages import evaluate, make_reference
from tensorar.toy.features import build_feature_extractor


class RandomConvFeatures:
    """A fixed random conv net that satisfies the FeatureExtractor protocol (stand-in for Inception)."""

    name = "random-conv-test"
    comparable_with_paper = False

    def __init__(self, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        self.conv = torch.randn(12, 3, 3, 3, generator=gen) / 3.0
        self.head = torch.randn(12, 10, generator=gen)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = images.permute(0, 3, 1, 2).float() / 127.5 - 1  # (B, 3, H, W)
        h = torch.tanh(torch.nn.functional.conv2d(x, self.conv, padding=1))  # (B, 12, H, W)
        pool = h.mean(dim=(2, 3))  # (B, 12)
        spatial = h[:, :3, ::2, ::2].permute(0, 2, 3, 1).flatten(1)  # (B, H/2 * W/2 * 3)
        return {"pool": pool, "logits": pool @ self.head, "spatial": spatial}


def _images(seed: int, n: int = 48, size: int = 8) -> np.ndarray:
    # Smooth-ish random images: a per-image colour plus noise, so features vary across images.
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 216, size=(n, 1, 1, 3))
    noise = rng.integers(-40, 41, size=(n, size, size, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _npz(path, images: np.ndarray):
    atomic_save_npz(path, arr_0=images, labels=np.zeros(len(images), dtype=np.int64))
    return path


def test_streamed_batches_reassemble_the_array(tmp_path):
    images = _images(0, n=13)
    path = _npz(tmp_path / "x.npz", images)
    assert evaluate.npz_image_count(path) == 13
    batches = list(evaluate.iter_npz_images(path, batch_size=5))
    assert [len(b) for b in batches] == [5, 5, 3]
    np.testing.assert_array_equal(np.concatenate(batches), images)


def test_non_uint8_batch_is_rejected(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, arr_0=np.zeros((2, 4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="uint8"):
        list(evaluate.iter_npz_images(path, batch_size=2))


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"not a zip"), "not an .npz file"),
    (lambda p: np.savez(p, images=np.zeros((4, 8, 8, 3), np.uint8)), "holds no arr_0"),
    (lambda p: np.savez(p, arr_0=np.zeros((0, 8, 8, 3), np.uint8)), "holds 0 image"),
])
def test_unusable_batches_are_named(tmp_path, make, message):
    path = tmp_path / "bad.npz"
    make(path)
    with pytest.raises(InputError, match=f"bad.npz.*{message}"):
        list(evaluate.iter_npz_images(path, batch_size=4))


def test_non_finite_reference_statistics_are_refused(tmp_path):
    images = _images(0)
    ref = tmp_path / "ref.npz"
    np.savez(ref, arr_0=images, mu=np.full(12, np.nan), sigma=np.eye(12), mu_s=np.zeros(48), sigma_s=np.eye(48))
    with pytest.raises(InputError, match="ref.npz.*not finite"):
        evaluate.evaluate(ref, _npz(tmp_path / "s.npz", images), RandomConvFeatures(), progress=False)


def test_metrics_of_identical_and_shifted_batches(tmp_path):
    extractor = RandomConvFeatures()
    images = _images(1)
    ref = _npz(tmp_path / "ref.npz", images)
    same = _npz(tmp_path / "same.npz", images)
    small = _npz(tmp_path / "small.npz", np.clip(images.astype(int) + 20, 0, 255).astype(np.uint8))
    large = _npz(tmp_path / "large.npz", np.clip(images.astype(int) + 80, 0, 255).astype(np.uint8))

    kw = dict(batch_size=16, progress=False)
    m_same = evaluate.evaluate(ref, same, extractor, **kw)
    m_small = evaluate.evaluate(ref, small, extractor, **kw)
    m_large = evaluate.evaluate(ref, large, extractor, **kw)

    assert abs(m_same["fid"]) < 1e-6 and abs(m_same["sfid"]) < 1e-6
    assert m_same["precision"] == 1.0 and m_same["recall"] == 1.0
    assert 0 < m_small["fid"] < m_large["fid"]
    assert 0 < m_small["sfid"] < m_large["sfid"]
    assert m_large["precision"] < 1.0
    assert m_same["inception_score"] >= 1.0
    assert m_same["num_reference"] == m_same["num_samples"] == len(images)
    assert m_same["feature_network"] == "random-conv-test" and m_same["comparable_with_paper"] is False


def test_precomputed_reference_statistics_are_used(tmp_path):
    # ADM's released reference batches carry mu/sigma/mu_s/sigma_s; FID then uses those, not the images.
    extractor = RandomConvFeatures()
    images = _images(2)
    sample = _npz(tmp_path / "sample.npz", images)
    feats = extractor(torch.from_numpy(images))
    pool, spatial = feats["pool"].double().numpy(), feats["spatial"].double().numpy()
    ref = tmp_path / "ref.npz"
    atomic_save_npz(ref, arr_0=images, mu=pool.mean(0) + 1.0, sigma=np.cov(pool, rowvar=False),
                    mu_s=spatial.mean(0), sigma_s=np.cov(spatial, rowvar=False))
    metrics = evaluate.evaluate(ref, sample, extractor, progress=False)
    assert metrics["reference_stats"] == "precomputed"
    assert metrics["fid"] == pytest.approx(pool.shape[1], rel=1e-4)  # ||+1 shift||^2 = D
    assert abs(metrics["sfid"]) < 1e-4


@pytest.mark.slow
def test_cli_prints_adm_lines_and_writes_json(tmp_path, capsys):
    from tensorar.toy.features import ToyClassifier, ToyClassifierConfig

    config = ToyClassifierConfig(image_size=8, widths=(8, 16))
    torch.manual_seed(0)
    classifier = tmp_path / "cls.pt"
    torch.save({"config": asdict(config), "model": ToyClassifier(config).state_dict()}, classifier)
    ref = _npz(tmp_path / "ref.npz", _images(3))
    sample = _npz(tmp_path / "sample.npz", _images(4))
    out = tmp_path / "metrics.json"

    evaluate.main([str(ref), str(sample), "--out", str(out), "--features", "toy", "--classifier", str(classifier),
                   "--batch-size", "16", "--device", "cpu"])

    lines = capsys.readouterr().out.strip().splitlines()
    names = ["Inception Score", "FID", "sFID", "Precision", "Recall"]
    assert [line.split(": ")[0] for line in lines] == names
    metrics = json.loads(out.read_text())
    for name, key, line in zip(names, ["inception_score", "fid", "sfid", "precision", "recall"], lines):
        assert float(line.split(": ")[1]) == metrics[key]
    assert metrics["feature_network"] == "toy-digits-classifier"
    assert metrics["comparable_with_paper"] is False
    assert metrics["num_reference"] == metrics["num_samples"] == 48
    assert metrics["samples_sha256"] != metrics["reference_sha256"]
    assert len(metrics["reference_sha256"]) == 64


def test_bootstrap_replicates_are_fids_of_resampled_samples(tmp_path):
    """--bootstrap: the reported FID is untouched; each replicate is the FID of a resample of the sample
    features against the same reference; the replicates spread around the FID, reproducibly by seed."""
    extractor = RandomConvFeatures()
    ref, sample = _npz(tmp_path / "ref.npz", _images(1)), _npz(tmp_path / "sample.npz", _images(2))
    plain = evaluate.evaluate(ref, sample, extractor, batch_size=16, progress=False)
    boot = evaluate.evaluate(ref, sample, extractor, batch_size=16, progress=False, bootstrap=30, bootstrap_seed=5)
    assert "fid_bootstrap" not in plain and boot["fid"] == plain["fid"]
    b = boot["fid_bootstrap"]
    assert b["fid"] == pytest.approx(plain["fid"], rel=1e-6) and len(b["replicates"]) == 30 and b["seed"] == 5
    assert len(set(b["replicates"])) > 1 and b["interval"]["low"] < b["fid"] < b["interval"]["high"]
    again = evaluate.evaluate(ref, sample, extractor, batch_size=16, progress=False, bootstrap=30, bootstrap_seed=5)
    assert again["fid_bootstrap"]["replicates"] == b["replicates"]


def test_build_feature_extractor_errors(tmp_path):
    with pytest.raises(ValueError, match="--inception-weights"):
        build_feature_extractor("inception")
    with pytest.raises(ValueError, match="unknown feature network"):
        build_feature_extractor("clip")
    with pytest.raises(FileNotFoundError, match="torch-fidelity"):
        build_feature_extractor("inception", inception_weights=tmp_path / WEIGHTS_NAME)


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory):
    """torch-fidelity's InceptionV3 with random weights, saved under the official file name.

    The class always loads a state dict while it is built, so the random one is taken from an instance
    whose loading is switched off (torch-fidelity internals only; our code then loads the file normally).
    """
    from torch_fidelity import feature_extractor_inceptionv3 as tf_inception

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tf_inception, "load_state_dict_from_url", lambda *a, **k: {})
        mp.setattr(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
        torch.manual_seed(0)
        state_dict = tf_inception.FeatureExtractorInceptionV3("random", ["2048"]).state_dict()
    path = tmp_path_factory.mktemp("inception") / WEIGHTS_NAME
    torch.save(state_dict, path)
    return path


def test_inception_hash_check_is_on_by_default(random_inception_weights):
    with pytest.raises(ValueError, match="6726825d"):
        InceptionFeatureExtractor(random_inception_weights)


def test_inception_feature_shapes_and_taps(random_inception_weights):
    extractor = InceptionFeatureExtractor(random_inception_weights, verify_hash=False)
    captured = {}
    extractor.net.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, o: captured.update(nchw=o.clone()))
    images = torch.randint(0, 256, (2, 32, 40, 3), dtype=torch.uint8)  # any size: resized to 299 inside

    out = extractor(images)

    assert out["pool"].shape == (2, 2048) and out["logits"].shape == (2, 1008) and out["spatial"].shape == (2, 2023)
    assert all(v.dtype == torch.float32 for v in out.values())
    torch.testing.assert_close(out["logits"], out["pool"] @ extractor.net.fc.weight.T)  # no bias
    nhwc = out["spatial"].reshape(2, 17, 17, 7)  # (B, H, W, 7): TF's layout of mixed_6/conv[..., :7]
    torch.testing.assert_close(nhwc.permute(0, 3, 1, 2), captured["nchw"][:, :7])


def test_make_reference_from_image_folder(tmp_path):
    rng = np.random.default_rng(5)
    sizes = {"b_cat": [(20, 30), (24, 24)], "a_dog": [(30, 20), (16, 16), (40, 28)]}
    for cls, shapes in sizes.items():
        (tmp_path / "data" / cls).mkdir(parents=True)
        for j, (h, w) in enumerate(shapes):
            pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / cls / f"{j}.png")
    out = tmp_path / "ref.npz"

    make_reference.main(["--data", str(tmp_path / "data"), "--out", str(out), "--image-size", "12"])
    with np.load(out) as ref:
        assert ref["arr_0"].shape == (5, 12, 12, 3) and ref["arr_0"].dtype == np.uint8
        assert ref["labels"].tolist() == [0, 0, 0, 1, 1]  # sorted class folders: a_dog=0, b_cat=1

    make_reference.main(["--data", str(tmp_path / "data"), "--out", str(out), "--image-size", "12",
                         "--max-images", "2"])
    with np.load(out) as ref:
        assert ref["labels"].tolist() == [0, 1]  # evenly spaced: first and last image
