"""Tables, diagnostics and figures: aggregation over seeds, pending rows, the paper's values beside
paper-scale rows, provenance, CSV, and what the figures plot."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tensorar.reporting import paper, plots, tables
from tensorar.stages.tables import main


def provenance(dataset="digits", seeds=(0, 1)):
    return {"config_hash": "abc123def456", "experiment": "t", "dataset": dataset,
            "feature_network": "toy-FID: digits classifier features", "seeds": list(seeds), "num_samples": 10}


@pytest.fixture
def runs(tmp_path):
    """Two seeds of metrics / sampler stats (1,234 parameters, of which 1,000 the backbone's) and grids."""
    out = []
    for seed, (fid, rate) in enumerate([(10.0, 100.0), (14.0, 50.0)]):
        metrics, stats = tmp_path / f"m{seed}.json", tmp_path / f"s{seed}.json"
        metrics.write_text(json.dumps({"fid": fid, "sfid": 2.0, "inception_score": 5.0 + seed,
                                       "precision": 0.5, "recall": 0.25}))
        stats.write_text(json.dumps({"generate_images_per_s": rate,
                                     "model": {"parameters": 1234, "base_parameters": 1000}}))
        Image.fromarray(np.full((8, 8, 3), 40 * seed, np.uint8)).save(tmp_path / f"s{seed}.png")
        out.append({"seed": seed, "metrics": str(metrics), "stats": str(stats)})
    return out


def table2(runs, toy=True, pending=None):
    backbones = [{"key": "B", "label": "LlamaGen-B", "resolution": 256, "paper_row": "llamagen-b-256"},
                 {"key": "M2", "label": "Open-MAGVIT2-B", "resolution": 256, "paper_row": "open-magvit2-b",
                  "pending": pending or "backbone not implemented"}]
    sections = tables.table2_sections(backbones, "k=4, d=1, exponential", lambda b, m, tag="final": runs, toy)
    return {"title": "Table 2: c2i", "provenance": provenance("digits" if toy else "imagenet"), "sections": sections}


def write(tmp_path, manifest, what="table"):
    out = tmp_path / f"{what}.md"
    main([what, "--manifest", json.dumps(manifest), "--out", str(out)])
    return out.read_text()


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def row_of(text: str, *wanted: str) -> list[str]:
    """The cells of the first Markdown row that holds every `wanted` cell."""
    return next(cells(line) for line in text.splitlines() if line.startswith("|") and set(wanted) <= set(cells(line)))


def test_aggregate_mean_and_sample_std():
    mean, std, n = tables.aggregate([10.0, 14.0])
    assert (mean, n) == (12.0, 2) and std == pytest.approx(np.std([10, 14], ddof=1))
    assert np.isnan(tables.aggregate([3.0])[1])
    assert tables.fmt(12.0, float("nan")) == "12.00"
    assert tables.fmt(12.0, 2.8284) == "12.00 ± 2.83"


def test_toy_table_markdown_and_csv(tmp_path, runs):
    text = write(tmp_path, table2(runs))
    assert "abc123def456" in text and "git commit" in text and "digits" in text
    assert "12.00 ± 2.83" in text  # toy-FID over the two seeds
    assert "toy-FID" in text and "| FID" not in text and "| sFID" in text
    assert "pending (backbone not implemented)" in text and "Open-MAGVIT2-B" in text
    # Parameters come from the sampler's stats, with the plug-in's overhead over its backbone.
    assert "1.2K (+23.4%)" in text
    # Toy rows never show the paper's numbers: no paper columns, and the header says why once.
    assert "(paper)" not in text and paper.NOT_IN_PAPER not in text and "5.46" not in text
    assert text.count("No paper columns: the paper ran nothing at this scale") == 1
    assert "other methods" not in text
    csv = pd.read_csv(tmp_path / "table.csv")
    assert list(csv["section"]) == ["table2"] * 6
    assert csv.loc[0, "fid_mean"] == 12.0 and csv.loc[0, "seeds"] == 2 and csv.loc[0, "params"] == 1234
    assert csv.loc[3, "status"] == "pending (backbone not implemented)"


def test_paper_scale_rows_show_the_papers_values(tmp_path, runs):
    text = write(tmp_path, table2(runs, toy=False))
    base, control = row_of(text, "base", "LlamaGen-B"), row_of(text, tables.CONTROL_LABEL)
    tensorar = row_of(text, "with TensorAR (k=4, d=1, exponential)", "LlamaGen-B")
    assert "5.46" in base and "193.6" in base and "111M" in base  # Table 2, LlamaGen-B (256x256)
    assert "4.71" in tensorar and "116M (+4.6%)" in tensorar
    assert paper.CONTROL_NOT_IN_PAPER in control  # the control is ours, never in the paper
    # A pending backbone's rows still show what the paper printed for it.
    assert "3.08" in row_of(text, "base", "Open-MAGVIT2-B")
    # The other methods' rows as printed, in a section of their own ("-" where the paper prints none).
    assert "other methods, as printed in the paper" in text
    var = row_of(text, "VAR")
    assert "1.73" in var and "2.0B" in var
    assert "-" in row_of(text, "MAR")


def test_ablation_rows_get_paper_values_only_in_the_papers_setting(tmp_path, runs):
    variants = {"linear": {"k": 4, "depth": 1, "schedule": "linear"},
                "linear_k2": {"k": 2, "depth": 1, "schedule": "linear"}}
    backbone = {"key": "B", "label": "LlamaGen-B", "paper_row": "llamagen-b-256"}
    section = tables.ablation_section("table5", backbone, variants, lambda name: name,
                                      lambda b, m, tag="final": runs, toy=False)
    text = write(tmp_path, {"title": "Table 5: noise schedule", "provenance": provenance("imagenet"),
                            "sections": [section]})
    assert "4.79" in row_of(text, "linear", "LlamaGen-B")  # Table 5, Linear
    assert paper.OTHER_SETTING in row_of(text, "linear_k2")  # k=2 with linear is not the paper's row
    assert "5.46" in row_of(text, "base (no TensorAR)")
    other = tables.ablation_section("table5", {**backbone, "paper_row": "llamagen-l-256"}, variants,
                                    str, lambda b, m, tag="final": runs, toy=False)
    assert all(row["paper"] == paper.NO_PAPER_ROW for row in other["rows"][::2])  # not the ablation backbone


def timing_file(tmp_path, name, latency_s, images_per_s) -> dict:
    """A run's timing keys: a TIMING.json as `tensorar time_sampling` writes it (one job, several models; only
    the fields the tables read are real) and which of its models the run is."""
    path = tmp_path / f"{name}.json"
    block = {"latency_s": {"mean": float(np.mean(latency_s)), "values": latency_s},
             "images_per_s": {"mean": float(np.mean(images_per_s)), "values": images_per_s}}
    other = {"latency_s": {"mean": 1.0, "values": [1.0] * len(latency_s)},
             "images_per_s": {"mean": 1.0, "values": [1.0] * len(latency_s)}}
    path.write_text(json.dumps({"batch_size": 4, "warmup": 1, "repeats": len(latency_s),
                                "models": {"base": other, "timed": block}}))
    return {"timing": str(path), "timed_model": "timed"}


def latency_table(tmp_path, *rows):
    manifest = {"title": "Table 6", "provenance": provenance(), "sections": [
        {"name": "table6b", "title": "Table 6b", "latency": True,
         "rows": [{"key": f"x{i}", "method": "tensorar", "cells": {"Depth": i + 1}, "runs": r}
                  for i, r in enumerate(rows)]}]}
    return write(tmp_path, manifest), pd.read_csv(tmp_path / "table.csv")


def test_latency_column_falls_back_to_the_sampler_stats(tmp_path, runs):
    text, csv = latency_table(tmp_path, runs)
    assert "15.00 ± 7.07" in text  # 1000/100 and 1000/50 ms per image
    # How the latency was measured, beside the table: the sampling jobs' clock, with its caveat.
    assert tables.LATENCY_NOTE_FALLBACK.format(rows="") in text and "repeats" not in text
    assert csv.loc[0, "latency_source"] == "sampler" and csv.loc[0, "latency_n"] == 2


def test_latency_column_from_the_timing_jobs(tmp_path, runs):
    # The first seed has a timing job (3 repeats), the second a second one (2 repeats): values pooled.
    timed = [{**runs[0], **timing_file(tmp_path, "t0", [0.010, 0.012, 0.014], [120.0, 100.0, 80.0])},
             {**runs[1], **timing_file(tmp_path, "t1", [0.011, 0.013], [90.0, 110.0])}]
    text, csv = latency_table(tmp_path, timed)
    ms = np.array([10.0, 12.0, 14.0, 11.0, 13.0])
    assert f"{ms.mean():.2f} ± {ms.std(ddof=1):.2f}" in row_of(text, "1")  # not the stats' 15.00 ± 7.07
    assert "15.00" not in text
    assert tables.LATENCY_NOTE_TIMED.format(repeats=5) in text and "over 5 repeats" in text
    assert "tokenizer decoding excluded" not in text  # no fallback row, no fallback caveat
    assert csv.loc[0, "latency_ms_mean"] == pytest.approx(ms.mean())
    assert csv.loc[0, "latency_ms_std"] == pytest.approx(ms.std(ddof=1))
    assert (csv.loc[0, "latency_source"], csv.loc[0, "latency_n"]) == ("timing", 5)
    # Only the first seed timed (the plan's default): its repeats alone.
    text, _ = latency_table(tmp_path, [timed[0], runs[1]])
    assert "12.00 ± 2.00" in text and tables.LATENCY_NOTE_TIMED.format(repeats=3) in text


def test_latency_column_mixed_sources_mark_the_fallback_rows(tmp_path, runs):
    timed = [{**runs[0], **timing_file(tmp_path, "t0", [0.010, 0.012, 0.014], [120.0, 100.0, 80.0])},
             runs[1]]
    text, csv = latency_table(tmp_path, timed, runs)
    assert "12.00 ± 2.00" in row_of(text, "1") and f"15.00 ± 7.07{tables.FALLBACK_MARK}" in row_of(text, "2")
    assert tables.LATENCY_NOTE_TIMED.format(repeats=3) in text
    assert tables.LATENCY_NOTE_FALLBACK.format(rows=f" of the rows marked{tables.FALLBACK_MARK}") in text
    assert list(csv["latency_source"]) == ["timing", "sampler"]


def test_benchmark_tables_state_their_own_sample_count(workflow_config):
    from tensorar.plan import Plan

    plan = Plan(workflow_config("config.yaml"))
    table3 = plan.manifests.table_manifest("table3")["provenance"]
    assert table3["samples"] == "samples per model: 4 images per prompt of the toy GenEval prompts"
    assert "images per prompt" in tables.provenance_lines(table3)[2]
    assert f"samples per model: {plan.experiment.evaluation.num_samples}" not in tables.provenance_lines(table3)[2]
    assert "samples" not in plan.manifests.table_manifest("table2")["provenance"]


def test_tables_say_which_sampling_protocol_made_each_row(workflow_config):
    from tensorar.plan import Plan

    paper = Plan(workflow_config("paper.yaml")).manifests.table_manifest("table2")["provenance"]
    line = tables.provenance_lines(paper)[-1]
    assert line.startswith("- sampling protocol: Open-MAGVIT2-B, Open-MAGVIT2-L: fp32, balanced labels, eager; ")
    assert "LlamaGen-XXL-384: bf16, TF32, random labels, eager" in line
    toy = Plan(workflow_config("config.yaml")).manifests.table_manifest("table2")["provenance"]
    assert tables.provenance_lines(toy)[-1].endswith(": fp32, balanced labels, eager")


def test_every_diagnostics_row_has_its_own_label(workflow_config):
    from tensorar.plan import Plan

    labels = [r["label"] for r in Plan(workflow_config("config.yaml")).manifests.diagnostics_manifest()["diagnostics"]]
    assert len(labels) == len(set(labels))
    assert any("self-drafting (ours)" in label for label in labels)
    assert any("literal loss weights" in label for label in labels)


def test_diagnostics(tmp_path, runs):
    diag = tmp_path / "d.json"
    diag.write_text(json.dumps({"copy_rate": {"none": 0.5, "schedule": 0.25}, "base_nll": 2.0, "note": "text",
                                "num_items": 359, "seed": 0, "plugin_config": {"k": 4}}))
    manifest = {"provenance": provenance(seeds=(0,)),
                "diagnostics": [{"label": "B with TensorAR", "runs": [{"seed": 0, "diagnostics": str(diag)}]}],
                "draft_noise": [{"label": "B draft noise", "runs": runs[:1], "reference": runs[1:]}]}
    text = write(tmp_path, manifest, "diagnostics")
    assert "copy_rate.none" in text and "0.5000" in text and "note" not in text
    assert "| 359 " in text and "plugin_config" not in text and "| seed" not in text
    assert "not from the paper" in text and "10.00" in text and "14.00" in text
    assert (tmp_path / "diagnostics.csv").exists()


def draw_figures(tmp_path, runs, monkeypatch, table2_runs=None) -> tuple[dict, dict, dict]:
    """Write the figures; returns (output paths, each figure's lines' (x, y), each figure's x label)."""
    outputs = {k: str(tmp_path / f"{k}.png") for k in ("fig2", "fig4", "fig5", "grid")}
    manifest = {"provenance": provenance(), "outputs": outputs,
                "table2": table2(table2_runs or runs)["sections"][0]["rows"],
                "fig5": {"backbone": "B", "curves": {"TensorAR": [{"step": 1, "runs": runs}, {"step": 2, "runs": runs}]}},
                "grids": [{"label": "B base", "png": [runs[0]["stats"].replace(".json", ".png")]}]}
    plotted, xlabels = {}, {}
    real_save = plots._save

    def keep(fig, path):  # record what each figure draws before it is written
        plotted[path] = [(line.get_xdata().tolist(), line.get_ydata().tolist()) for line in fig.axes[0].get_lines()]
        xlabels[path] = fig.axes[0].get_xlabel()
        real_save(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    main(["figures", "--manifest", json.dumps(manifest)])
    return outputs, plotted, xlabels


def test_figures_plot_the_runs_numbers(tmp_path, runs, monkeypatch):
    outputs, plotted, xlabels = draw_figures(tmp_path, runs, monkeypatch)
    for path in outputs.values():
        assert Image.open(path).size[0] > 100
    # Fig. 2: parameters (from the sampler's stats) against the mean toy-FID of each run row.
    assert ([1234, 1234, 1234], [12.0, 12.0, 12.0]) not in plotted[outputs["fig2"]]
    assert ([1234], [12.0]) in plotted[outputs["fig2"]]
    # Fig. 4: throughput without timing jobs: the sampling jobs' rate (mean over seeds: (100 + 50) / 2 images/s).
    assert ([75.0], [12.0]) in plotted[outputs["fig4"]] and "sampling jobs' own clock" in xlabels[outputs["fig4"]]
    # Fig. 5: the training curve at steps 1 and 2.
    assert ([1, 2], [12.0, 12.0]) in plotted[outputs["fig5"]]


def test_fig4_throughput_from_the_timing_jobs(tmp_path, runs, monkeypatch):
    timed = [{**runs[0], **timing_file(tmp_path, "t0", [0.010, 0.012, 0.014], [120.0, 100.0, 80.0])},
             runs[1]]
    outputs, plotted, xlabels = draw_figures(tmp_path, runs, monkeypatch, table2_runs=timed)
    lines = plotted[outputs["fig4"]]
    assert ([100.0], [12.0]) in lines and ([75.0], [12.0]) not in lines  # the timing job's mean, not the stats'
    assert ([80.0], [12.0]) in lines and ([120.0], [12.0]) in lines  # the ± SD error bar's caps (SD 20)
    assert "timing jobs, mean ± SD" in xlabels[outputs["fig4"]]


def benchmark_runs(tmp_path, overall=(0.5, 0.7), subsets=None):
    """Two seeds of GenEval scores as `tensorar score_benchmark` writes them; `subsets`: per seed the
    (seen, unseen) overall scores that --seen-prompts adds."""
    out = []
    for seed, value in enumerate(overall):
        scores, stats = tmp_path / f"g{seed}.json", tmp_path / f"gs{seed}.json"
        columns = dict.fromkeys(paper.GENEVAL_COLUMNS, 0.25)
        record = {"benchmark": "geneval", "scores": {**columns, "overall": value}}
        if subsets:
            record["subsets"] = {name: {"num_images": 4, "scores": {"overall": subsets[seed][i]}}
                                 for i, name in enumerate(("seen", "unseen"))}
        scores.write_text(json.dumps(record))
        stats.write_text(json.dumps({"model": {"parameters": 1234, "base_parameters": 1000}}))
        out.append({"seed": seed, "metrics": str(scores), "stats": str(stats)})
    return out


def test_toy_benchmark_table_reads_scores_and_labels_the_toy_ours(tmp_path):
    backbones = [{"key": "T", "label": "LlamaGen-t2i-toy", "paper_row": None}]
    sections = tables.benchmark_sections("table3", backbones, "k=4", lambda b, m, tag="final": benchmark_runs(tmp_path),
                                         toy=True)
    assert [s["name"] for s in sections] == ["table3"]  # no "other methods" beside a toy benchmark
    text = write(tmp_path, {"title": "Table 3: GenEval", "provenance": provenance(), "sections": sections})
    assert "toy benchmark, ours" in text and "FID" not in text[text.index("| Model"):]
    row = row_of(text, "LlamaGen-t2i-toy", "with TensorAR (k=4)")
    assert "0.600 ± 0.141" in row  # overall: mean and sample std of 0.5 and 0.7, GenEval's three decimals
    assert "0.250 ± 0.000" in row


def test_toy_geneval_table_shows_seen_and_held_out_prompts_apart(tmp_path):
    backbones = [{"key": "T", "label": "LlamaGen-t2i-toy", "paper_row": None}]
    runs = benchmark_runs(tmp_path, subsets=[(0.9, 0.3), (0.7, 0.5)])
    sections = tables.benchmark_sections("table3", backbones, "k=4", lambda b, m, tag="final": runs, toy=True,
                                         subsets=True)
    text = write(tmp_path, {"title": "Table 3: GenEval", "provenance": provenance(), "sections": sections})
    assert "Overall (seen prompts)" in text and "Overall (held-out prompts)" in text
    row = row_of(text, "LlamaGen-t2i-toy", "base")
    assert "0.800 ± 0.141" in row and "0.400 ± 0.141" in row  # seen: 0.9, 0.7; held out: 0.3, 0.5
    without = benchmark_runs(tmp_path)  # scored without --seen-prompts: an error naming the file
    sections = tables.benchmark_sections("table3", backbones, "k=4", lambda b, m, tag="final": without, toy=True,
                                         subsets=True)
    with pytest.raises(ValueError, match="g0.json: no seen / unseen prompt subsets"):
        write(tmp_path, {"title": "Table 3: GenEval", "provenance": provenance(), "sections": sections})


def test_paper_benchmark_table_prints_the_paper_beside_ours(tmp_path):
    backbones = [{"key": "J", "label": "Janus-Pro-7B", "paper_row": "janus-pro-7b", "pending": "weights not given"}]
    sections = tables.benchmark_sections("table4", backbones, "k=4", lambda b, m, tag="final": [], toy=False)
    text = write(tmp_path, {"title": "Table 4: DPG-Bench", "provenance": provenance("imagenet"),
                            "sections": sections})
    assert "pending (weights not given)" in text
    assert "Overall" in text and "GenEval" not in text
    tensorar_row = row_of(text, "Janus-Pro-7B", "with TensorAR (k=4)")
    assert "85.57" in " ".join(tensorar_row)  # the paper's overall for Janus-Pro + TensorAR (Table 4)
    printed = row_of(text, "DALL-E 3")  # other methods, as printed, not run here
    assert "83.50" in " ".join(printed) and "not run here" in text
