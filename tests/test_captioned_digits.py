"""Captioned digit canvases (ours): determinism, the canvas and caption spec, captions that hold on their
canvases by GenEval's own rules, idempotent dataset folders, and toy prompt sets the real scorers read."""
from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from tensorar.toy import benchmarks
from tensorar.toy import captioned_digits as cd
from tensorar.data.captions import CaptionedImages
from tensorar.toy.digits import load_digits_rgb, split_indices
from tensorar.evaluation import dpg, geneval

REPO_ROOT = Path(__file__).resolve().parents[1]
GENEVAL_PROMPTS = Path(os.environ.get("TENSORAR_SHARED", REPO_ROOT.parent / "shared")) / "reference" / "t2i" / \
    "prompts" / "geneval" / "evaluation_metadata.jsonl"
_D = "[0-9]"
_C = "(red|green|blue|yellow|purple|white)"
CAPTION_RE = {
    "single_object": rf"an? {_D}",
    "two_object": rf"an? {_D} and an? {_D}",
    "counting": rf"(one {_D}|(two|three|four) {_D}s)",
    "colors": rf"an? {_C} {_D}",
    "position": rf"an? {_D} (to the left of|to the right of|above|below) an? {_D}",
    "color_attr": rf"an? {_C} {_D} and an? {_C} {_D}",
}


@pytest.fixture(scope="module")
def items() -> list[cd.CaptionedCanvas]:
    return cd.generate(240, seed=5)


def _same(a: list[cd.CaptionedCanvas], b: list[cd.CaptionedCanvas]) -> bool:
    return all(np.array_equal(x.image, y.image) and x[1:] == y[1:] for x, y in zip(a, b)) and len(a) == len(b)


def test_generate_is_deterministic_and_splits_draw_their_own_glyphs(items):
    assert _same(cd.generate(240, seed=5), items)
    assert not _same(cd.generate(240, seed=6), items)
    val = cd.generate(240, seed=5, split="val")
    assert not _same(val, items)
    _, labels = load_digits_rgb(8)
    splits = split_indices(labels)  # make_digits' defaults
    for batch, split in ((items, "train"), (val, "val")):
        glyphs = {c.glyph for it in batch for c in it.cells if c}
        assert glyphs <= set(splits[split].tolist())
        for it in batch:
            used = [c.glyph for c in it.cells if c]
            assert len(used) == len(set(used))  # distinct instances within a canvas
            assert all(labels[c.glyph] == int(c.digit) for c in it.cells if c)


def test_canvas_is_coloured_glyphs_on_black_cells(items):
    grey8, _ = load_digits_rgb(8)  # make_digits' grey RGB at 8 px
    for it in items[:60]:
        assert it.image.shape == (16, 16, 3) and it.image.dtype == np.uint8
        for k, cell in enumerate(it.cells):
            y, x = divmod(k, 2)
            block = it.image[8 * y:8 * y + 8, 8 * x:8 * x + 8].astype(np.int64)  # (8, 8, 3)
            if cell is None:
                assert not block.any()
                continue
            # The brightest channel is make_digits' grey image whatever the colour; a zero channel stays 0.
            np.testing.assert_array_equal(block.max(-1), grey8[cell.glyph, ..., 0])
            for ch, v in enumerate(cd.PALETTE[cell.color]):
                if v == 0:
                    assert not block[..., ch].any()
    # A larger cell is the nearest upscale of the same canvas.
    big = cd.generate(10, seed=5, cell_size=16)
    for a, b in zip(items[:10], big):
        assert b.cells == a.cells and b.caption == a.caption
        np.testing.assert_array_equal(b.image, a.image.repeat(2, axis=0).repeat(2, axis=1))


def test_relations_between_cells_follow_genevals_rule():
    rel = cd.cell_relations(8)
    assert rel[(0, 1)] == {"left of"} and rel[(1, 0)] == {"right of"}
    assert rel[(0, 2)] == {"above"} and rel[(3, 1)] == {"below"}
    assert rel[(0, 3)] == {"left of", "above"} and rel[(2, 1)] == {"left of", "below"}  # diagonals: both


def test_captions_match_their_metadata_and_hold_on_their_canvas(items):
    tags = [it.metadata["tag"] for it in items]
    assert set(tags) == set(geneval.TAGS)
    assert 0.05 < np.mean([it.caption.endswith(cd.BACKGROUND_SUFFIX) for it in items]) < 0.4
    for it in items:
        meta = it.metadata
        assert it.caption == meta["prompt"]
        core = it.caption.removesuffix(cd.BACKGROUND_SUFFIX)
        assert re.fullmatch(CAPTION_RE[meta["tag"]], core), it.caption
        assert cd.caption_of(meta, core != it.caption) == it.caption
        assert geneval._check_metadata(json.loads(json.dumps(meta)), "item") == meta
        # Ground-truth detections (one per glyph, its cell box, its colour) pass GenEval's rules.
        dets = {name: geneval.ClassDetections(
            [cd.cell_box(k) for k, c in enumerate(it.cells) if c and c.digit == name],
            [1.0 for c in it.cells if c and c.digit == name],
            colors=[c.color for c in it.cells if c and c.digit == name]) for name in cd.CLASSES}
        record = geneval.evaluate_image(meta, dets)
        assert record["correct"], (it.caption, it.cells, record["reason"])
        # Exactly the objects of the caption: nothing else is drawn.
        assert sum(c is not None for c in it.cells) == sum(r["count"] for r in meta["include"])


def test_build_writes_the_jsonl_layout_and_is_idempotent(tmp_path):
    out = tmp_path / "captioned"
    card = cd.build(out, n=12, seed=1)
    assert card["count"]["total"] == 12 and card["settings"]["split"] == "train"
    assert sorted(p.name for p in out.iterdir()) == ["captions.jsonl", "dataset_card.json", "images", "metadata.jsonl"]
    lines = [json.loads(x) for x in (out / "captions.jsonl").read_text().splitlines()]
    assert lines[0] == {"image": "images/000000.png", "caption": lines[0]["caption"]}
    expected = cd.generate(12, seed=1)
    assert [x["caption"] for x in lines] == [it.caption for it in expected]
    ds = CaptionedImages(out)  # the library's reader of the small-set format
    assert len(ds) == 12 and ds.captions == [it.caption for it in expected]
    np.testing.assert_array_equal(np.asarray(ds.image(3)), expected[3].image)
    meta = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    assert meta[3]["metadata"] == expected[3].metadata

    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert cd.build(out, n=12, seed=1) == card  # no-op
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamp
    with pytest.raises(FileExistsError, match="different captioned dataset"):
        cd.build(out, n=12, seed=2)
    (out / "images" / "000004.png").write_bytes(b"broken")
    assert cd.verify(out) is None
    with pytest.raises(FileExistsError, match="not a complete dataset"):
        cd.build(out, n=12, seed=1)
    assert cd.build(out, n=12, seed=1, overwrite=True)["sha256"] == card["sha256"]
    assert cd.verify(out) is not None and not list(tmp_path.glob(".*"))  # no temp dirs left

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        cd.build(other, n=4)
    assert (other / "notes.txt").read_text() == "mine"


def _key_shapes(meta: dict) -> tuple:
    return tuple(meta), tuple(tuple(r) for r in meta["include"]), tuple(tuple(r) for r in meta.get("exclude", []))


def test_toy_geneval_metadata_is_in_genevals_format(tmp_path):
    metadata = benchmarks.write_toy_geneval(tmp_path)
    assert metadata == benchmarks.toy_geneval_metadata()  # deterministic
    loaded = geneval.load_metadata(tmp_path / "evaluation_metadata.jsonl")
    assert loaded == metadata
    assert (tmp_path / "generation_prompts.txt").read_text().splitlines() == [m["prompt"] for m in metadata]
    assert (tmp_path / "object_names.txt").read_text().split() == list(cd.CLASSES)
    per_tag = {t: [m for m in metadata if m["tag"] == t] for t in geneval.TAGS}
    assert [len(v) for v in per_tag.values()] == [10, 20, 20, 20, 20, 20]
    for tag, ms in per_tag.items():
        assert len({cd.composition(m) for m in ms}) == len(ms)
        for m in ms:
            assert re.fullmatch(CAPTION_RE[tag], m["prompt"])
            assert all(r["class"] in cd.CLASSES and r.get("color", "red") in geneval.COLORS for r in m["include"])
    assert {m["include"][0]["count"] for m in per_tag["counting"]} <= {2, 3, 4}  # as GenEval
    if GENEVAL_PROMPTS.is_file():  # the same keys, in the same order, as the official file, tag by tag
        official = [json.loads(x) for x in GENEVAL_PROMPTS.read_text().splitlines() if x.strip()]
        for tag in geneval.TAGS:
            assert {_key_shapes(m) for m in per_tag[tag]} == {_key_shapes(m) for m in official if m["tag"] == tag}


def test_composition_ignores_wording_order_mirror_and_background():
    key = cd.composition
    assert key(cd.metadata_for("two_object", ["3", "7"])) == key(cd.metadata_for("two_object", ["7", "3"]))
    assert key(cd.metadata_for("position", ["3", "7"], relation="left of")) == \
        key(cd.metadata_for("position", ["7", "3"], relation="right of"))
    assert key(cd.metadata_for("position", ["3", "7"], relation="above")) == \
        key(cd.metadata_for("position", ["7", "3"], relation="below"))
    assert key(cd.metadata_for("colors", ["2"], colors=["blue"], background=True)) == \
        key(cd.metadata_for("colors", ["2"], colors=["blue"]))
    different = [cd.metadata_for("position", ["3", "7"], relation="left of"),
                 cd.metadata_for("position", ["3", "7"], relation="right of"),
                 cd.metadata_for("position", ["3", "7"], relation="above"),
                 cd.metadata_for("colors", ["2"], colors=["red"]), cd.metadata_for("single_object", ["2"]),
                 cd.metadata_for("counting", ["2"], count=2), cd.metadata_for("counting", ["2"], count=3),
                 cd.metadata_for("color_attr", ["2", "5"], colors=["red", "blue"]),
                 cd.metadata_for("color_attr", ["2", "5"], colors=["blue", "red"])]
    assert len({key(m) for m in different}) == len(different)


def test_benchmark_compositions_are_held_out_of_the_training_captions(tmp_path):
    """The toy GenEval prompts and the training captions are disjoint by composition, but for the
    labelled seen prompts, which the training split does hold (make_captions, as the workflow runs it)."""
    from tensorar.stages import make_captions

    make_captions.main(["--out", str(tmp_path), "--num-train", "300", "--num-val", "30"])
    bench = geneval.load_metadata(tmp_path / "geneval" / "evaluation_metadata.jsonl")
    seen = set((tmp_path / "geneval" / benchmarks.SEEN_PROMPTS_FILE).read_text().splitlines())
    assert seen < {m["prompt"] for m in bench}
    assert {t: sum(m["prompt"] in seen for m in bench if m["tag"] == t) for t in geneval.TAGS} == \
        {"single_object": 2, "two_object": 4, "counting": 4, "colors": 4, "position": 4, "color_attr": 4}
    assert len({cd.composition(m) for m in bench}) == len(bench)  # one prompt per composition
    for split in ("train", "val"):
        captions = [json.loads(line)["metadata"] for line in
                    (tmp_path / split / "metadata.jsonl").read_text().splitlines()]
        held = {cd.composition(m) for m in captions} & {cd.composition(m) for m in bench if m["prompt"] not in seen}
        assert not held, f"{split} captions hold benchmark compositions {sorted(held)}"
        texts = {m["prompt"].removesuffix(cd.BACKGROUND_SUFFIX) for m in captions}
        assert {m["prompt"] for m in bench if m["prompt"] not in seen}.isdisjoint(texts)
        if split == "train":
            assert seen <= texts
    card = json.loads((tmp_path / "train" / "dataset_card.json").read_text())
    assert card["settings"]["held_out"]["unseen"] == len(bench) - len(seen)


def test_held_out_rejects_a_prompt_both_seen_and_unseen():
    bench = benchmarks.toy_geneval_metadata()
    clash = cd.HeldOut(frozenset(cd.composition(m) for m in bench), tuple(bench[:1]))
    with pytest.raises(ValueError, match="both seen and held out"):
        cd.generate(2, held_out=clash)


def test_toy_dpg_csv_is_in_dpgs_format(tmp_path):
    items = benchmarks.write_toy_dpg(tmp_path)
    assert len(items) == 30 and items == benchmarks.toy_dpg_items()
    with open(tmp_path / "dpg_bench.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == dpg.CSV_COLUMNS
        rows = list(reader)
    for row in rows:
        assert row["category_broad"] in {"entity", "attribute", "relation", "other", "global"}
        assert row["tuple"].split("-")[0].strip() == row["category_broad"]  # dpg.py's L1 rule
    strict = dpg.load_questions(tmp_path / "dpg_bench.csv", official_quirks=False)
    official = dpg.load_questions(tmp_path / "dpg_bench.csv")
    assert list(strict) == [it.item_id for it in items] == list(official)
    # The official loader skips data row 0; nothing depends on it, so no image would be dropped.
    first = official[items[0].item_id]
    assert 1 not in first.questions and all(1 not in deps for deps in first.dependencies.values())
    assert dpg.load_prompts(tmp_path / "prompts") == {it.item_id: it.prompt for it in items}
    assert {r["category_broad"] for r in rows} == {"entity", "attribute", "relation", "other", "global"}
    # Ground-truth canvases of an item satisfy its GenEval-style requirements.
    rng = np.random.default_rng(0)
    for item in items[:6]:
        for image in benchmarks.render_dpg_item(item, rng):
            assert image.shape == (16, 16, 3)
