"""DPG-Bench scorer: parity with the official compute_dpg_bench.py on the reference CSV and answers, the
quirk flag, grids, the raw-answers file and the prompts."""
from __future__ import annotations

import csv
import json
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tensorar.evaluation import dpg

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("TENSORAR_SHARED", REPO_ROOT.parent / "shared")) / "reference"
FILES = ["itemA.png", "itemB.png", "itemC.png"]  # the reference run's image folder


@pytest.fixture(scope="module")
def t2i_ref() -> Path:
    path = REFERENCE / "t2i"
    if not path.is_dir():
        pytest.skip(f"T2I reference data not found at {path}")
    return path


@pytest.fixture(scope="module")
def ref(t2i_ref) -> dict:
    return json.loads((t2i_ref / "dpg_rules_ref.json").read_text())


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=dpg.CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def ref_csv(ref, tmp_path) -> Path:
    return _write_csv(tmp_path / "dpg_bench.csv", ref["csv_rows"])


def _answer_fn(ref):
    # The reference's fake VQA: a table per (item, crop), 'yes' for questions it does not list.
    def answer(item, crop, question):
        return ref["answers"][f"{item}|crop{crop}"].get(question, ref["default_answer_if_unlisted"])
    return answer


def _all_answers(ref, questions) -> dict:
    return {(item, c): {q: _answer_fn(ref)(item, c, q) for q in questions[item].questions.values()}
            for item in questions for c in range(4)}


def test_load_questions_matches_the_official_parse(ref, ref_csv):
    questions = dpg.load_questions(ref_csv)
    expected = ref["parsed_question_dict"]
    assert list(questions) == list(expected)
    for item, q in questions.items():
        e = expected[item]
        assert {str(k): v for k, v in q.tuples.items()} == e["qid2tuple"]
        assert {str(k): v for k, v in q.dependencies.items()} == e["qid2dependency"]
        assert {str(k): v for k, v in q.questions.items()} == e["qid2question"]


def test_score_matches_the_official_main(ref, ref_csv):
    result = dpg.score(dpg.load_questions(ref_csv), FILES, _answer_fn(ref), pic_num=ref["pic_num"])
    assert result.score == 59.375
    assert list(result.failed) == ["itemA.png"]  # "Failed filename: itemA.png 1"
    assert "KeyError" in result.failed["itemA.png"]
    for item, values in ref["per_image_crop_scores_and_mean"].items():
        assert result.crop_scores[item] + [result.image_scores[item]] == values
    expected = ref["summary_text"]
    assert dpg.format_summary(result, "fake_model", "<IMAGE_DIR>", "<RES_PATH>") == expected
    # and the numbers themselves, parsed back from the official text
    lines = expected.splitlines()
    l1_at, l2_at = lines.index("L1 category scores:"), lines.index("L2 category scores:")
    parse = lambda ls: {ln.strip().rsplit(": ", 1)[0]: float(ln.rsplit(": ", 1)[1]) for ln in ls}
    assert result.l1 == parse(lines[l1_at + 1: l2_at])
    assert result.l2 == parse(lines[l2_at + 1: lines.index("Image path: <IMAGE_DIR>")])
    row = result.table_row()
    assert list(row) == list(dpg.TABLE_COLUMNS)
    assert row["overall"] == 59.375 and row["entity"] == 100.0 and row["global"] == 100.0
    assert math.isnan(row["relation"]) and math.isnan(row["other"])


def test_official_detail_log_rescores_the_same(ref, ref_csv, tmp_path):
    detail = tmp_path / "dpg-bench_x_results_detail.txt"
    detail.write_text("\n".join(ref["detail_lines"]) + "\n")
    answers = dpg.answers_from_detail_file(detail)
    assert answers[("itemB", 3)]["Are the dogs brown?"] == "Yes"
    assert sorted(c for i, c in answers if i == "itemA") == [0]  # the official stopped after crop 0
    result = dpg.score(dpg.load_questions(ref_csv), FILES, dpg.answers_lookup(answers))
    assert result.score == 59.375 and list(result.failed) == ["itemA.png"]


def test_raw_answers_file_round_trip(ref, ref_csv, tmp_path):
    answers = _all_answers(ref, dpg.load_questions(ref_csv, official_quirks=False))
    path = tmp_path / "answers.jsonl"
    dpg.write_answers(path, answers)
    assert dpg.read_answers(path) == answers
    result = dpg.score_answers_file(ref_csv, path)
    assert result.score == 59.375 and list(result.failed) == ["itemA.png"]
    path.write_text(path.read_text() + path.read_text().splitlines()[0] + "\n")
    with pytest.raises(ValueError, match=r"answers.jsonl:13: answers for item 'itemA' crop 0 given twice"):
        dpg.read_answers(path)


def test_live_vqa_on_grids_reads_crops_in_official_order(ref, ref_csv, tmp_path):
    items = ["itemA", "itemB", "itemC"]
    for i, item in enumerate(items):
        # crop k of item i is filled with (i, k, 0): the fake VQA model reads both back from the pixels
        dpg.write_grid(tmp_path / "images", item, [np.full((32, 32, 3), (i, k, 0), np.uint8) for k in range(4)])
    (tmp_path / "images" / "notes.txt").write_text("not an image")

    class FakeVQA:
        def answer(self, image, question):
            assert image.shape == (32, 32, 3)
            i, k = int(image[0, 0, 0]), int(image[0, 0, 1])
            return _answer_fn(ref)(items[i], k, question)

    result = dpg.score_folder(ref_csv, tmp_path / "images", FakeVQA(), resolution=32)
    assert result.score == 59.375
    assert sorted(result.failed) == ["itemA.png", "notes.txt"]  # the official also tries every file


def test_quirk_flag_off_gives_the_corrected_score(ref, ref_csv):
    questions = dpg.load_questions(ref_csv, official_quirks=False)
    assert sorted(questions["itemA"].questions) == [1, 2, 3, 4]  # data row 0 is kept
    result = dpg.score(questions, FILES + ["notes.txt"], _answer_fn(ref), official_quirks=False)
    # itemA: [1, .5 (no sofa zeroes "on the sofa"), .5, 1]; itemB: "Yes" now counts in crop 3.
    assert result.crop_scores == {"itemA": [1.0, 0.5, 0.5, 1.0], "itemB": [0.5, 0.25, 0.75, 1.0],
                                  "itemC": [1.0, 0.0, 0.5, 1.0]}
    assert result.score == pytest.approx(100 * (0.75 + 0.625 + 0.625) / 3)
    assert result.failed == {}
    # categories from all 4 crops' raw answers: "Are the dogs brown?" is yes in every crop now
    assert result.l2["attribute - color"] == pytest.approx(100 * 7 / 8)  # cat black 3/4, dogs brown 4/4
    assert result.l2["attribute - count"] == 75.0 and result.l2["global -"] == 75.0


def test_quirk_flag_on_non_contiguous_items_and_missing_parents(tmp_path):
    row = lambda item, pid, dep, q: {"item_id": item, "text": "t", "keywords": "k", "proposition_id": pid,
                                     "dependency": dep, "category_broad": "entity", "category_detailed": "whole",
                                     "tuple": f"entity - whole ({q})", "question_natural_language": q}
    path = _write_csv(tmp_path / "q.csv", [row("x", 1, "0", "header-row"), row("a", 1, "0", "a1"),
                                           row("b", 1, "0", "b1"), row("a", 2, "1", "a2")])
    official = dpg.load_questions(path)
    assert list(official["a"].questions) == [2]  # the later block replaced the earlier one
    assert list(dpg.load_questions(path, official_quirks=False)["a"].questions) == [1, 2]
    dup = _write_csv(tmp_path / "dup.csv", [row("a", 1, "0", "a1"), row("a", 1, "0", "again")])
    with pytest.raises(ValueError, match=r"dup.csv: data row 2 \(item 'a'\): proposition_id 1 repeated"):
        dpg.load_questions(dup, official_quirks=False)
    orphan = _write_csv(tmp_path / "orphan.csv", [row("a", 1, "0", "a1"), row("a", 2, "7", "a2")])
    with pytest.raises(ValueError, match=r"item 'a' depends on propositions \[7\]"):
        dpg.load_questions(orphan, official_quirks=False)
    # an exception from the answer source drops the image officially, propagates otherwise
    qs = dpg.load_questions(path, official_quirks=False)
    answers = dpg.answers_lookup({})
    assert dpg.score(qs | {"ok": dpg.ItemQuestions({1: "t"}, {1: [0]}, {1: "q"})}, ["a.png", "ok.png"],
                     lambda i, c, q: answers(i, c, q) if i == "a" else "yes").failed.keys() == {"a.png"}
    with pytest.raises(KeyError, match="no answer for item 'a' crop 0"):
        dpg.score(qs, ["a.png"], answers, official_quirks=False)


def test_dependency_cascade_order():
    # Child 1 is listed before its parent 2, which depends on 3 (answered no).
    q = dpg.ItemQuestions({1: "e - (a)", 2: "e - (b)", 3: "e - (c)"}, {1: [2], 2: [3], 3: [0]},
                          {1: "q1", 2: "q2", 3: "q3"})
    ans = lambda item, crop, question: "no" if question == "q3" else "yes"
    official = dpg.score({"i": q}, ["i.png"], ans, pic_num=1)
    corrected = dpg.score({"i": q}, ["i.png"], ans, pic_num=1, official_quirks=False)
    assert official.crop_scores["i"] == [1 / 3]  # one CSV-order pass: child 1 keeps its 1
    assert corrected.crop_scores["i"] == [0.0]


def test_missing_csv_names_the_file_and_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        dpg.load_questions(tmp_path / "dpg_bench.csv")
    msg = str(err.value)
    assert str(tmp_path / "dpg_bench.csv") in msg
    assert "dpg_bench/dpg_bench.csv" in msg and "github.com/TencentQQGYLab/ELLA" in msg
    bad = tmp_path / "bad.csv"
    bad.write_text("item_id,text\nx,y\n")
    with pytest.raises(ValueError, match=r"bad.csv: missing columns \['keywords'"):
        dpg.load_questions(bad)


def test_grid_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    path = dpg.write_grid(tmp_path, "partiprompts7", images)
    assert path == tmp_path / "partiprompts7.png"
    grid = dpg.read_grid(path)
    assert grid.shape == (16, 16, 3)
    np.testing.assert_array_equal(grid[:8, 8:], images[1])  # top-right is sample 1
    for crop, image in zip(dpg.crop_grid(grid, 8), images):
        np.testing.assert_array_equal(crop, image)
    assert len(dpg.crop_grid(grid, 8, pic_num=1)) == 1
    small = dpg.crop_grid(grid, 12)  # a grid smaller than 2 x resolution: zeros outside, as PIL crops
    assert small[3].shape == (12, 12, 3) and not small[3][4:].any() and small[3][:4, :4].any()
    with pytest.raises(ValueError, match="4 \\(R, R, 3\\) uint8"):
        dpg.make_grid(images[:3])
    with pytest.raises(ValueError, match="pic_num"):
        dpg.crop_grid(grid, 8, pic_num=5)


def test_table_columns_match_the_paper_tables():
    from tensorar.reporting.paper import DPG_COLUMNS

    assert dpg.TABLE_COLUMNS == DPG_COLUMNS


def test_load_shared_prompts(t2i_ref):
    prompts = dpg.load_prompts(t2i_ref / "prompts" / "dpg_bench" / "prompts")
    assert len(prompts) == 1065
    prefixes = Counter(item.rstrip("0123456789") for item in prompts)
    assert prefixes == {"": 299, "partiprompts": 324, "COCOval": 100, "localized": 22,
                        **{p: 40 for p in ("countbench", "diffusiondb", "drawtext", "midjourney",
                                           "posescript", "stanford", "vrd", "whoops")}}
    assert all(text and text == text.strip() for text in prompts.values())
    with pytest.raises(FileNotFoundError, match="no DPG-Bench prompts"):
        dpg.load_prompts(t2i_ref / "no_such_folder")
