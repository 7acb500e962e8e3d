"""tensorar.tables: aggregation over seeds, pending rows, paper columns, provenance, CSV, figures."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from tensorar import tables
from tensorar.paper_values import NOT_IN_PAPER, NOT_LOOKED_UP


def provenance(dataset="digits", seeds=(0, 1)):
    return {"config_hash": "abc123def456", "experiment": "t", "dataset": dataset,
            "feature_network": "toy-FID: digits classifier features", "seeds": list(seeds), "num_samples": 10}


@pytest.fixture
def runs(tmp_path):
    """Two seeds of metrics / sampler stats and a tiny checkpoint of 1,234 parameters."""
    ckpt = tmp_path / "final.pt"
    torch.save({"kind": "gpt", "model": {"w": torch.zeros(30, 40), "b": torch.zeros(34)}, "step": 3}, ckpt)
    out = []
    for seed, (fid, rate) in enumerate([(10.0, 100.0), (14.0, 50.0)]):
        metrics, stats = tmp_path / f"m{seed}.json", tmp_path / f"s{seed}.json"
        metrics.write_text(json.dumps({"fid": fid, "sfid": 2.0, "inception_score": 5.0 + seed,
                                       "precision": 0.5, "recall": 0.25}))
        stats.write_text(json.dumps({"generate_images_per_s": rate}))
        Image.fromarray(np.full((8, 8, 3), 40 * seed, np.uint8)).save(tmp_path / f"s{seed}.png")
        out.append({"seed": seed, "metrics": str(metrics), "stats": str(stats), "ckpt": str(ckpt)})
    return out


def table2_manifest(runs, dataset="digits"):
    rows = [
        {"key": "B/base", "backbone": "B", "method": "base", "cells": {"Model": "B", "Method": "base"}, "runs": runs},
        {"key": "B/finetune", "backbone": "B", "method": "finetune", "cells": {"Model": "B", "Method": "ft"},
         "runs": runs},
        {"key": "M2/base", "cells": {"Model": "Open-MAGVIT2-B", "Method": "base"}, "params": None,
         "pending": "backbone not implemented"},
    ]
    return {"title": "Table 2: c2i", "provenance": provenance(dataset),
            "sections": [{"name": "table2", "title": "Table 2: c2i", "rows": rows}]}


def test_aggregate_mean_and_sample_std():
    mean, std, n = tables.aggregate([10.0, 14.0])
    assert (mean, n) == (12.0, 2) and std == pytest.approx(np.std([10, 14], ddof=1))
    assert np.isnan(tables.aggregate([3.0])[1])
    assert tables.fmt(12.0, float("nan")) == "12.00"
    assert tables.fmt(12.0, 2.8284) == "12.00 ± 2.83"


def test_count_parameters(runs):
    assert tables.count_parameters(runs[0]["ckpt"]) == 30 * 40 + 34


def test_table_markdown_and_csv(tmp_path, runs):
    out = tmp_path / "table2.md"
    tables.main(["table", "--manifest", json.dumps(table2_manifest(runs)), "--out", str(out)])
    text = out.read_text()
    assert "abc123def456" in text and "git commit" in text and "digits" in text
    assert "12.00 ± 2.83" in text  # toy-FID over the two seeds
    assert "toy-FID" in text and "| FID" not in text and "| sFID" in text
    assert "pending (backbone not implemented)" in text and "Open-MAGVIT2-B" in text
    assert NOT_IN_PAPER in text and "1.2K" in text
    csv = pd.read_csv(tmp_path / "table2.csv")
    assert list(csv["section"]) == ["table2"] * 3
    assert csv.loc[0, "fid_mean"] == 12.0 and csv.loc[0, "seeds"] == 2 and csv.loc[0, "params"] == 1234
    assert csv.loc[2, "status"] == "pending (backbone not implemented)"


def test_paper_scale_rows_say_not_looked_up(tmp_path, runs):
    out = tmp_path / "table2.md"
    tables.main(["table", "--manifest", json.dumps(table2_manifest(runs, "imagenet")), "--out", str(out)])
    text = out.read_text()
    base_line = next(line for line in text.splitlines() if "| base " in line and "| B " in line)
    ft_line = next(line for line in text.splitlines() if "| ft " in line)
    assert NOT_LOOKED_UP in base_line and NOT_IN_PAPER in ft_line  # the control is ours, never in the paper


def test_latency_column(tmp_path, runs):
    manifest = {"title": "Table 6", "provenance": provenance(), "sections": [{"name": "table6b", "title": "Table 6b", "latency": True,
                "rows": [{"key": "x", "method": "tensorar", "cells": {"Depth": 1}, "runs": runs}]}]}
    out = tmp_path / "t6.md"
    tables.main(["table", "--manifest", json.dumps(manifest), "--out", str(out)])
    text = out.read_text()
    assert "15.00 ± 7.07" in text  # 1000/100 and 1000/50 ms per image
    assert tables.LATENCY_NOTE in text  # how the latency was measured, beside the table


def test_diagnostics(tmp_path, runs):
    diag = tmp_path / "d.json"
    diag.write_text(json.dumps({"copy_rate": {"none": 0.5, "schedule": 0.25}, "base_nll": 2.0, "note": "text",
                                "num_items": 359, "seed": 0, "plugin_config": {"k": 4}}))
    manifest = {"provenance": provenance(seeds=(0,)),
                "diagnostics": [{"label": "B with TensorAR", "runs": [{"seed": 0, "diagnostics": str(diag)}]}],
                "draft_noise": [{"label": "B draft noise", "runs": runs[:1], "reference": runs[1:]}]}
    out = tmp_path / "diagnostics.md"
    tables.main(["diagnostics", "--manifest", json.dumps(manifest), "--out", str(out)])
    text = out.read_text()
    assert "copy_rate.none" in text and "0.5000" in text and "note" not in text
    assert "| 359 " in text and "plugin_config" not in text and "| seed" not in text
    assert "not from the paper" in text and "10.00" in text and "14.00" in text
    assert (tmp_path / "diagnostics.csv").exists()


def test_figures(tmp_path, runs):
    outputs = {k: str(tmp_path / f"{k}.png") for k in ("fig2", "fig4", "fig5", "grid")}
    manifest = {"provenance": provenance(), "outputs": outputs,
                "table2": table2_manifest(runs)["sections"][0]["rows"],
                "fig5": {"backbone": "B", "curves": {"TensorAR": [{"step": 1, "runs": runs}, {"step": 2, "runs": runs}]}},
                "grids": [{"label": "B base", "png": [runs[0]["stats"].replace(".json", ".png")]}]}
    tables.main(["figures", "--manifest", json.dumps(manifest)])
    for path in outputs.values():
        assert Image.open(path).size[0] > 100


def test_pending_benchmark_table(tmp_path):
    manifest = {"title": "Table 3: GenEval", "provenance": provenance(), "sections": [
        {"name": "table3", "title": "Table 3: GenEval", "columns": ["GenEval overall"],
         "rows": [{"key": "J", "cells": {"Model": "Janus-Pro"}, "pending": "text-to-image backbone not implemented"}]}]}
    out = tmp_path / "table3.md"
    tables.main(["table", "--manifest", json.dumps(manifest), "--out", str(out)])
    text = out.read_text()
    table = text[text.index("| Model"):]
    assert "GenEval overall" in table and "FID" not in table
    assert "pending (text-to-image backbone not implemented)" in text
