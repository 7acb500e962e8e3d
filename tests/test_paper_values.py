"""Every number of tensorar.reporting.paper (the paper's values our tables print beside ours) against the
independent transcription in ../shared/reference/paper/tables.yaml (skipped when absent)."""
from __future__ import annotations

import pytest
import yaml

from tensorar.reporting import paper


@pytest.fixture(scope="module")
def printed(paper_ref) -> dict:
    return yaml.safe_load((paper_ref / "tables.yaml").read_text())


def by_model(printed: dict, table: str) -> dict[str, list]:
    return {str(row[0] if table != "table2" else row[1]): row for row in printed[table]["rows"]}


def imagenet_row(row: paper.ImageNetRow) -> list:
    return [row.fid, row.inception_score, row.precision, row.recall]


def test_table2_backbones_and_other_methods(printed):
    rows = by_model(printed, "table2")
    for key, pair in paper.TABLE2.items():
        for method in ("base", "tensorar"):
            row = pair[method]
            want = rows.pop(row.model)  # [type, model, params, fid, is, precision, recall]
            assert [want[2], *want[3:]] == [row.params, *imagenet_row(row)], (key, method)
    for kind, row in paper.TABLE2_OTHER_METHODS:
        want = rows.pop(row.model)
        assert want[0] == kind and [want[2], *want[3:]] == [row.params, *imagenet_row(row)], row.model
    assert not rows, f"rows of Table 2 we do not print: {list(rows)}"


def test_ablation_tables(printed):
    baseline = paper.TABLE2[paper.ABLATION_BACKBONE]["base"]
    for table, ours in (("table5", paper.TABLE5), ("table6a", paper.TABLE6A)):
        rows = by_model(printed, table)
        assert rows.pop("Baseline")[1:] == imagenet_row(baseline)
        assert {r.model: imagenet_row(r) for r in ours.values()} == {m: r[1:] for m, r in rows.items()}
    rows = by_model(printed, "table6b")  # [model, fid, precision, recall, latency_s]
    base = paper.TABLE6B_BASELINE
    assert rows.pop("Baseline")[1:] == [base.fid, base.precision, base.recall, paper.TABLE6B_LATENCY_S["base"]]
    for depth, row in paper.TABLE6B.items():
        assert rows.pop(row.model)[1:] == [row.fid, row.precision, row.recall, paper.TABLE6B_LATENCY_S[depth]]
    assert not rows


@pytest.mark.parametrize("table, ours, others, columns", [
    ("table3", paper.TABLE3, paper.TABLE3_OTHER_METHODS, paper.GENEVAL_COLUMNS),
    ("table4", paper.TABLE4, paper.TABLE4_OTHER_METHODS, paper.DPG_COLUMNS)])
def test_text_to_image_tables(printed, table, ours, others, columns):
    assert len(printed[table]["columns"]) == 1 + len(columns)
    rows = by_model(printed, table)
    names = {"llamagen-t2i": "LlamaGen", "janus-pro-7b": "Janus-Pro-7B"}
    for key, pair in ours.items():
        assert list(pair["base"]) == rows.pop(names[key])[1:]
        assert list(pair["tensorar"]) == rows.pop(f"{names[key]} +TensorAR")[1:]
    assert {m: list(v) for m, v in others.items()} == {m: r[1:] for m, r in rows.items()}
