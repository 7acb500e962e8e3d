"""GenEval scorer: parity with the official evaluate_images.py on the reference cases, the folder layout,
the raw-detections file, and the summary."""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tensorar.evaluation import geneval
from tensorar.evaluation.geneval import ClassDetections

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("TENSORAR_SHARED", REPO_ROOT.parent / "shared")) / "reference"


@pytest.fixture(scope="module")
def t2i_ref() -> Path:
    path = REFERENCE / "t2i"
    if not path.is_dir():
        pytest.skip(f"T2I reference data not found at {path}")
    return path


@pytest.fixture(scope="module")
def rules_ref(t2i_ref) -> dict:
    return json.loads((t2i_ref / "geneval_rules_ref.json").read_text())


@pytest.fixture(scope="module")
def classnames(t2i_ref) -> list[str]:
    return (t2i_ref / "prompts" / "geneval" / "evaluation_object_names.txt").read_text().splitlines()


def _case_detections(case: dict, color_table: dict) -> dict[str, ClassDetections]:
    # The reference's fake CLIP names a box's colour from its top-left corner.
    out = {}
    for name, rows in case["detections"].items():
        rows = np.asarray(rows, dtype=float).reshape(-1, 5)
        colors = [color_table.get(f"{float(r[0])},{float(r[1])}") for r in rows]
        out[name] = ClassDetections(rows[:, :4], rows[:, 4], colors=colors)
    return out


def test_defaults_match_the_reference(rules_ref):
    d, rules = rules_ref["defaults"], geneval.GenEvalRules()
    assert (rules.threshold, rules.counting_threshold, rules.max_objects, rules.position_threshold) == (
        d["threshold"], d["counting_threshold"], d["max_objects"], d["position_threshold"])
    assert list(geneval.COLORS) == d["colors"]
    assert rules.bgcolor == (0x99, 0x99, 0x99) and d["bgcolor"] == "#999"


def test_relative_position_matches_all_reference_cases(rules_ref):
    cases = rules_ref["relative_position_cases"]
    assert len(cases) == 300
    for case in cases:
        assert sorted(geneval.relative_position(case["box_a"], case["box_b"])) == case["relations"], case


def test_evaluate_image_matches_all_reference_cases(rules_ref, classnames):
    cases = rules_ref["evaluate_image_cases"]
    assert len(cases) == 18
    for case in cases:
        dets = _case_detections(case, rules_ref["fake_color_table"])
        rec = geneval.evaluate_image(case["metadata"], dets, filename="x.png", classnames=classnames)
        assert (rec["correct"], rec["reason"]) == (case["correct"], case["reason"]), case["name"]
        details = json.loads(rec["details"])
        assert details == case["kept"], case["name"]
        assert list(details) == list(case["kept"]), case["name"]  # classes in the detector's order
        assert rec["metadata"] == json.dumps(case["metadata"])
        meta = case["metadata"]
        assert (rec["tag"], rec["prompt"], rec["filename"]) == (meta["tag"], meta["prompt"], "x.png")


def test_raw_detections_file_reproduces_the_reference(rules_ref, classnames, tmp_path):
    cases = rules_ref["evaluate_image_cases"]
    entries = []
    for i, case in enumerate(cases):
        dets = _case_detections(case, rules_ref["fake_color_table"])
        entries.append({"filename": f"{i:05d}/samples/0000.png", "metadata": case["metadata"], "detections": {
            name: {"boxes": dets[name].boxes.tolist(), "scores": dets[name].scores.tolist(),
                   "colors": list(dets[name].colors)}
            for name in classnames if name in dets}})  # a detector writes classes in its own order
    path = tmp_path / "raw.jsonl"
    geneval.write_raw_detections(path, entries)
    records = geneval.score_raw_detections(path)
    assert len(records) == len(cases)
    for rec, case in zip(records, cases):
        assert (rec["correct"], rec["reason"]) == (case["correct"], case["reason"]), case["name"]
        assert list(json.loads(rec["details"]).items()) == list(case["kept"].items()), case["name"]


def test_raw_detections_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "raw.jsonl"
    meta = {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "pink"}], "prompt": "p"}
    geneval.write_raw_detections(path, [{"filename": "a.png", "metadata": meta, "detections": {
        "car": {"boxes": [[0, 0, 5, 5]], "scores": [0.9], "colors": ["mauve"]}}}])
    with pytest.raises(ValueError, match=r"raw.jsonl:1: class 'car': unknown colours \['mauve'\]"):
        list(geneval.read_raw_detections(path))
    geneval.write_raw_detections(path, [{"filename": "a.png", "metadata": meta,
                                         "detections": {"car": {"boxes": [[0, 0, 5, 5]], "scores": [0.9]}}}])
    with pytest.raises(ValueError, match="colour of 'car' needed"):
        geneval.score_raw_detections(path)
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        geneval.score_raw_detections(tmp_path / "nope.jsonl")


def test_threshold_is_strict_and_in_float32():
    # 0.3 as float32 is 0.30000001 > 0.3 in float64, yet the official (float32) test rejects it.
    dets = {"cow": ClassDetections([[0, 0, 1, 1], [0, 0, 2, 2]], [0.3, np.nextafter(np.float32(0.3), 1)])}
    kept = geneval.keep_detections(dets, "single_object")
    assert [k.index for k in kept["cow"]] == [1]
    assert geneval.keep_detections(dets, "counting") == {}


def test_top_max_objects_by_score_and_ties():
    scores = np.r_[0.95, 0.5, 0.97, 0.2, np.full(16, 0.6)]  # 3 above 0.9, 19 above 0.3
    dets = {"cup": ClassDetections(np.zeros((20, 4)), scores)}
    assert [k.index for k in geneval.keep_detections(dets, "counting")["cup"]] == [2, 0]
    assert len(geneval.keep_detections(dets, "single_object")["cup"]) == 16
    tied = {"cup": ClassDetections(np.zeros((3, 4)), [0.5, 0.8, 0.5])}
    assert [k.index for k in geneval.keep_detections(tied, "single_object")["cup"]] == [1, 2, 0]


def test_masked_crop_matches_pil_composite_and_crop():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    mask = rng.random((20, 30)) > 0.5
    for box in ([2.5, 3.5, 17.2, 12.8], [-4.0, 5.0, 25.0, 26.0], [20.6, 0.4, 33.5, 9.5]):
        pil = Image.composite(Image.fromarray(image), Image.new("RGB", (30, 20), "#999"), Image.fromarray(mask))
        expected = np.asarray(pil.crop(tuple(np.float32(box))))
        np.testing.assert_array_equal(geneval.masked_crop(image, np.float32(box), mask), expected)
    np.testing.assert_array_equal(geneval.masked_crop(image, [0, 0, 30, 20], None), image)


class _ToyDetector:
    """Finds the pure red / pure blue squares the test paints: red ones are cars, blue ones are cups."""
    def detect(self, image):
        out = {}
        for name, rgb in (("car", (255, 0, 0)), ("cup", (0, 0, 255))):
            hit = np.all(image == rgb, axis=-1)
            if hit.any():
                ys, xs = np.nonzero(hit)
                out[name] = ClassDetections([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], [0.95], masks=hit[None])
        return out


class _MeanColor:
    """Names a crop's colour from its mean pixel; the grey background outside the mask is ignored."""
    def classify(self, crops, classname):
        names = []
        for crop in crops:
            px = crop.reshape(-1, 3)
            px = px[np.any(px != 153, axis=1)]
            r, _, b = px.mean(axis=0)
            names.append("red" if r > b else "blue")
        return names


def _write_toy_folder(root: Path) -> list[dict]:
    metas = [
        {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}], "prompt": "a red car"},
        {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "blue"}], "prompt": "a blue car"},
        {"tag": "position", "include": [{"class": "cup", "count": 1},
                                        {"class": "car", "count": 1, "position": ["left of", 0]}], "prompt": "p"},
    ]
    for index, meta in enumerate(metas):
        images = []
        for n in range(2):
            img = np.full((32, 32, 3), 60, np.uint8)
            img[4:12, 2 + 4 * n: 10 + 4 * n] = (255, 0, 0)
            img[20:28, 22:30] = (0, 0, 255)
            images.append(img)
        geneval.write_prompt_images(root, index, meta, images)
    return metas


def test_layout_round_trip(tmp_path):
    metas = _write_toy_folder(tmp_path)
    (tmp_path / "00000" / "samples" / "grid.png").write_bytes(b"")  # ignored, as officially
    (tmp_path / "notes").mkdir()  # not a digit folder: ignored
    samples = geneval.list_samples(tmp_path)
    assert [s.filename for s in samples] == [f"{i:05d}/samples/{n:04d}.png" for i in range(3) for n in range(2)]
    assert [s.metadata for s in samples[::2]] == metas
    assert json.loads((tmp_path / "00002" / "metadata.jsonl").read_text()) == metas[2]
    assert geneval.load_image(samples[1].path)[4, 6].tolist() == [255, 0, 0]
    with pytest.raises(ValueError, match="uint8"):
        geneval.write_prompt_images(tmp_path, 9, metas[0], [np.zeros((4, 4, 3), np.float32)])


def test_live_scoring_equals_raw_export(tmp_path):
    _write_toy_folder(tmp_path / "samples")
    live = geneval.score_folder(tmp_path / "samples", _ToyDetector(), _MeanColor())
    assert [r["correct"] for r in live] == [True, True, False, False, True, True]
    assert live[2]["reason"] == "expected blue car>=1, found 0 blue; and 1 red"
    n = geneval.export_raw_detections(tmp_path / "samples", _ToyDetector(), _MeanColor(), tmp_path / "raw.jsonl")
    assert n == 6
    assert geneval.score_raw_detections(tmp_path / "raw.jsonl") == live
    geneval.write_results(tmp_path / "results.jsonl", live)
    assert geneval.load_results(tmp_path / "results.jsonl") == live


def test_missing_colour_source_is_an_error():
    meta = {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}], "prompt": "p"}
    with pytest.raises(ValueError, match="colour of 'car' needed"):
        geneval.evaluate_image(meta, {"car": ClassDetections([[0, 0, 4, 4]], [0.9])})


def test_summary_is_the_unweighted_mean_of_tag_means():
    records = [{"tag": "single_object", "correct": c} for c in (True, True, True, False)]
    records += [{"tag": "counting", "correct": c} for c in (True, False)]
    out = geneval.summarize(records)
    assert out == {"single_object": 0.75, "counting": 0.5, "overall": 0.625}
    with pytest.raises(ValueError):
        geneval.summarize([])


def test_table_columns_match_the_paper_tables():
    from tensorar.reporting.paper import GENEVAL_COLUMNS

    assert geneval.TABLE_COLUMNS == GENEVAL_COLUMNS


def test_load_shared_metadata(t2i_ref):
    metas = geneval.load_metadata(t2i_ref / "prompts" / "geneval" / "evaluation_metadata.jsonl")
    assert len(metas) == 553
    assert Counter(m["tag"] for m in metas) == {"single_object": 80, "two_object": 99, "counting": 80,
                                                "colors": 94, "position": 100, "color_attr": 100}
    prompts = (t2i_ref / "prompts" / "geneval" / "generation_prompts.txt").read_text().splitlines()
    assert [m["prompt"] for m in metas] == prompts


def test_load_metadata_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        geneval.load_metadata(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"tag": "single_object", "include": [], "prompt": "p"}\n'
                   '{"tag": "nope", "include": [], "prompt": "p"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: unknown tag 'nope'"):
        geneval.load_metadata(bad)
