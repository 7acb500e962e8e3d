"""make_digits: deterministic, stratified, atomic materialisation of scikit-learn's digits."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from tensorar.toy import digits as make_digits
from tensorar.stages.make_digits import main


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("a") / "digits"
    main(["--out", str(out)])
    return out


def _ids(split_dir):
    return {int(p.stem): int(p.parent.name) for p in split_dir.rglob("*.png")}


def test_two_runs_give_identical_checksums(digits_dir, tmp_path):
    other = tmp_path / "digits"
    card = make_digits.build(other)
    first = json.loads((digits_dir / "dataset_card.json").read_text())
    assert card["sha256"] == first["sha256"]
    for split in make_digits.SPLITS:
        assert make_digits.split_digest(other / split) == make_digits.split_digest(digits_dir / split)
        assert make_digits.split_digest(other / split) == card["sha256"][split]


def test_counts_split_and_labels(digits_dir):
    card = make_digits.verify(digits_dir)
    assert card is not None
    target = load_digits().target
    train, val = _ids(digits_dir / "train"), _ids(digits_dir / "val")
    assert not train.keys() & val.keys()
    assert sorted(train.keys() | val.keys()) == list(range(1797))
    assert card["counts"]["train"]["total"] + card["counts"]["val"]["total"] == 1797
    for split, ids in (("train", train), ("val", val)):
        assert all(target[i] == c for i, c in ids.items())  # folder name = the digit
        assert card["counts"][split]["total"] == len(ids)
    # Stratified: every class puts round(0.2 * n_c) images in val.
    for c, n_c in enumerate(np.bincount(target)):
        n_val = sum(1 for label in val.values() if label == c)
        assert n_val == round(0.2 * n_c) == card["counts"]["val"]["per_class"][str(c)]


def test_images_are_rgb_nearest_upscaled_with_the_documented_grey_mapping(digits_dir):
    source = load_digits().images.astype(np.int64)
    for path in sorted((digits_dir / "val" / "7").glob("*.png"))[:5]:
        im = Image.open(path)
        assert im.mode == "RGB" and im.size == (16, 16)
        arr = np.asarray(im)
        expected = (source[int(path.stem)] * 255 + 8) // 16  # (8, 8)
        np.testing.assert_array_equal(arr[::2, ::2, 0], expected)
        np.testing.assert_array_equal(arr[1::2, 1::2, 1], expected)  # 2x2 blocks, R = G = B
        np.testing.assert_array_equal(arr[..., 0], arr[..., 2])


def test_image_size_and_seed_are_honoured():
    images, labels = make_digits.load_digits_rgb(32)
    assert images.shape == (1797, 32, 32, 3) and images.dtype == np.uint8
    assert set(np.unique(images)) <= {(v * 255 + 8) // 16 for v in range(17)}
    with pytest.raises(ValueError, match="multiple of 8"):
        make_digits.load_digits_rgb(20)
    a, b = make_digits.split_indices(labels, seed=0), make_digits.split_indices(labels, seed=1)
    assert not np.array_equal(a["val"], b["val"])
    np.testing.assert_array_equal(a["val"], make_digits.split_indices(labels, seed=0)["val"])


def test_rerun_on_complete_dataset_is_a_no_op(digits_dir):
    card_path = digits_dir / "dataset_card.json"
    before = card_path.stat().st_mtime_ns
    make_digits.build(digits_dir)
    assert card_path.stat().st_mtime_ns == before


def test_killed_build_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    out = tmp_path / "digits"

    def die(*args, **kwargs):
        raise KeyboardInterrupt  # as if the job were killed just before the card is written

    monkeypatch.setattr(make_digits, "atomic_write_json", die)
    with pytest.raises(KeyboardInterrupt):
        make_digits.build(out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # the temp dir is cleaned up too

    monkeypatch.undo()
    out.mkdir()  # Snakemake pre-creates an output's parent: an empty DIR is not "something else"
    assert make_digits.verify(out) is None
    make_digits.build(out)
    assert make_digits.verify(out) is not None


def test_partial_or_altered_dataset_is_refused_then_replaced(tmp_path):
    out = tmp_path / "digits"
    (out / "train" / "0").mkdir(parents=True)
    (out / "train" / "0" / "0000.png").write_bytes(b"half a dataset")
    assert make_digits.verify(out) is None
    with pytest.raises(FileExistsError, match="--overwrite"):
        make_digits.build(out)
    card = make_digits.build(out, overwrite=True)
    assert make_digits.verify(out) == card
    victim = next((out / "val").rglob("*.png"))
    victim.write_bytes(victim.read_bytes()[:-1])
    assert make_digits.verify(out) is None
    with pytest.raises(FileExistsError):
        make_digits.build(out)


def test_different_arguments_do_not_reuse_an_existing_dataset(digits_dir):
    with pytest.raises(FileExistsError, match="different digits dataset"):
        make_digits.build(digits_dir, seed=1)
