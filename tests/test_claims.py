"""results/claims.md (tensorar.reporting.claims): verdicts from synthetic metrics files whose answers are
known, and the plan's claims manifest for the shipped configs."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tensorar.plan import Plan, manifest_inputs
from tensorar.reporting.claims import (
    CLAIMS,
    NO_INTERVAL,
    combine,
    evaluate_claims,
    write_claims,
)
from tensorar.stages.tables import main as tables_main


def config_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "config"


SETTINGS = {"level": 0.95, "bootstrap": 500, "seed": 0, "modest_latency": 0.25}


def write_runs(folder, name, fids, replicate_sd=None, seed=0):
    """Per-seed METRICS.json files; with `replicate_sd`, 200 sample-bootstrap replicates around each FID."""
    rng = np.random.default_rng(seed)
    runs = []
    for s, fid in enumerate(fids):
        record = {"fid": fid}
        if replicate_sd is not None:
            record["fid_bootstrap"] = {"replicates": (fid + 0.3 + replicate_sd * rng.standard_normal(200)).tolist()}
        path = folder / f"{name}-seed{s}.json"
        path.write_text(json.dumps(record))
        runs.append({"seed": s, "metrics": str(path)})
    return runs


def paired(a, b, side="less", **extra):
    return {"kind": "paired", "metric": "fid", "unit": "FID", "label": "a - b", "a": a, "b": b, "side": side, **extra}


def one_claim(*tests):
    return {"title": "t", "provenance": {}, "settings": SETTINGS,
            "claims": [{"id": "1", "claim": "c", "reading": "r", "tests": list(tests)}]}


def verdict_of(*tests):
    return evaluate_claims(one_claim(*tests))[0]


def test_a_clear_gain_over_three_seeds_is_supported_and_a_clear_loss_contradicted(tmp_path):
    better = write_runs(tmp_path, "better", [10.0, 10.4, 9.8])
    worse = write_runs(tmp_path, "worse", [12.0, 12.3, 11.9])
    result = verdict_of(paired(better, worse))
    test = result["tests"][0]
    assert result["verdict"] == "supported"
    assert test["interval"]["estimate"] == pytest.approx(-2.0)
    assert test["interval"]["method"] == "seed bootstrap" and test["interval"]["high"] < 0
    assert test["paired_t"]["high"] < 0  # the cross-check agrees
    assert verdict_of(paired(worse, better))["verdict"] == "contradicted"
    # "greater" turns the same interval around.
    assert verdict_of(paired(worse, better, "greater"))["verdict"] == "supported"


def test_noise_of_the_size_of_the_gap_is_inconclusive(tmp_path):
    a = write_runs(tmp_path, "a", [10.0, 12.0, 9.0])
    b = write_runs(tmp_path, "b", [11.0, 10.0, 10.5])
    assert verdict_of(paired(a, b))["verdict"] == "inconclusive"


def test_one_seed_uses_the_sample_bootstrap_and_without_it_has_no_interval(tmp_path):
    # FIDs 1.0 apart with replicates of SD 0.1: the sampling noise alone separates them.
    a = write_runs(tmp_path, "a", [10.0], replicate_sd=0.1)
    b = write_runs(tmp_path, "b", [11.0], replicate_sd=0.1, seed=1)
    test = verdict_of(paired(a, b))["tests"][0]
    assert test["verdict"] == "supported" and test["interval"]["method"] == "sample bootstrap"
    # Recentred: the interval is around the FID difference, not shifted by the replicates' bias (+0.3 each).
    assert test["interval"]["low"] < -1.0 < test["interval"]["high"] < -0.5
    # SD 2 per FID: the same gap is within the sampling noise.
    noisy = write_runs(tmp_path, "noisy", [10.0], replicate_sd=2.0)
    assert verdict_of(paired(noisy, b))["verdict"] == "inconclusive"
    bare_a, bare_b = write_runs(tmp_path, "bare_a", [10.0]), write_runs(tmp_path, "bare_b", [11.0])
    result = verdict_of(paired(bare_a, bare_b))
    assert result["verdict"] == NO_INTERVAL and "low" not in result["tests"][0]["interval"]


def test_monotonic_trend_needs_every_step(tmp_path):
    k2, k4, k8 = (write_runs(tmp_path, n, f) for n, f in
                  (("k2", [12.0, 12.2, 11.9]), ("k4", [10.0, 10.1, 9.9]), ("k8", [8.0, 8.3, 7.9])))
    trend = {"kind": "trend", "metric": "fid", "unit": "FID", "label": "k", "direction": "decreasing",
             "arms": [{"label": "k=2", "runs": k2}, {"label": "k=4", "runs": k4}, {"label": "k=8", "runs": k8}]}
    result = verdict_of(trend)
    assert result["verdict"] == "supported" and len(result["tests"][0]["steps"]) == 2
    trend["arms"] = [trend["arms"][0], trend["arms"][2], trend["arms"][1]]  # 12 -> 8 -> 10: one step goes up
    assert verdict_of(trend)["verdict"] == "contradicted"


def test_timing_is_judged_against_its_threshold(tmp_path):
    def timing(name, values):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"latency_s": {"values": values}}))
        return {"timing": str(path)}

    base = timing("base", [0.100, 0.101, 0.099, 0.100, 0.102])
    plus_ten = timing("plus_ten", [0.110, 0.111, 0.109, 0.110, 0.112])
    double = timing("double", [0.200, 0.201, 0.199, 0.200, 0.202])
    test = {"kind": "timing", "label": "latency", "side": "less", "null": 0.25, "relative": True, "unit": "%"}
    result = verdict_of({**test, "a": plus_ten, "b": base})
    assert result["verdict"] == "supported"
    assert result["tests"][0]["interval"]["estimate"] == pytest.approx(0.0998, abs=1e-3)
    assert verdict_of({**test, "a": double, "b": base})["verdict"] == "contradicted"
    slower = {"kind": "timing", "label": "deeper", "side": "greater", "null": 0.0, "relative": False, "unit": "s"}
    assert verdict_of({**slower, "a": plus_ten, "b": base})["verdict"] == "supported"


def test_overhead_range_and_tests_outside_the_verdict(tmp_path):
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"model": {"parameters": 1030, "base_parameters": 1000}}))
    inside = {"kind": "overhead", "label": "m", "stats": str(stats), "range": [1.5, 4.6]}
    assert verdict_of(inside)["verdict"] == "supported"
    assert verdict_of({**inside, "range": [4.0, 5.0]})["verdict"] == "contradicted"
    worse = write_runs(tmp_path, "w", [12.0, 12.3, 11.9])
    better = write_runs(tmp_path, "b", [10.0, 10.4, 9.8])
    # A contradicted side test marked in_verdict: false does not decide the claim.
    assert verdict_of(inside, paired(worse, better, in_verdict=False))["verdict"] == "supported"


def test_combine():
    assert combine(["supported", "supported"]) == "supported"
    assert combine(["supported", "inconclusive"]) == "inconclusive"
    assert combine(["supported", "contradicted", "inconclusive"]) == "contradicted"
    assert combine([NO_INTERVAL, NO_INTERVAL]) == NO_INTERVAL


def test_report_files_from_the_stage(tmp_path):
    a = write_runs(tmp_path, "a", [10.0, 10.4, 9.8])
    b = write_runs(tmp_path, "b", [12.0, 12.3, 11.9])
    manifest = one_claim(paired(a, b))
    manifest["provenance"] = {"config_hash": "x", "experiment": "toy", "dataset": "digits", "seeds": [0, 1, 2],
                              "feature_network": "toy", "num_samples": 10}
    out = tmp_path / "claims.md"
    tables_main(["claims", "--manifest", json.dumps(manifest), "--out", str(out)])
    text = out.read_text()
    assert "| 1 | c | a - b: -2.00 [" in text and "**supported**" in text and "seeds: [0, 1, 2]" in text
    assert json.loads(out.with_suffix(".json").read_text())["claims"][0]["verdict"] == "supported"
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    # Same manifest, same report: the bootstrap is seeded per test.
    again = tmp_path / "again.md"
    write_claims(manifest, again)
    assert again.read_text().split("## Per test")[1] == text.split("## Per test")[1]


def test_the_toy_plan_asks_every_claim_and_names_its_files(workflow_config):
    one_seed = Plan(copy.deepcopy(workflow_config("config.yaml")))
    assert [c["id"] for c in one_seed.claims_manifest()["claims"]] == [c for c in CLAIMS if c != "ours-c"]
    # config/toy-seeds.yaml on top, as `--configfile` merges it: three seeds and the longer fine-tuning.
    config = copy.deepcopy(workflow_config("config.yaml"))
    seeds = yaml.safe_load(Path(config_dir(), "toy-seeds.yaml").read_text())
    config["seeds"], config["claims"]["ours"]["longer_finetuning"] = seeds["seeds"], seeds["claims"]["ours"]["longer_finetuning"]
    plan = Plan(config)
    manifest = plan.claims_manifest()
    assert [c["id"] for c in manifest["claims"]] == list(CLAIMS)
    assert [r["seed"] for r in manifest["claims"][0]["tests"][0]["a"]] == [0, 1, 2]
    inputs = manifest_inputs(manifest)
    assert all(p.startswith(plan.layout.root) for p in inputs)
    assert plan.layout.timing("GPT-toy-S", "tensorar-depth4") in inputs  # claim 5's latency
    assert plan.layout.metrics("GPT-toy-S", "finetune-x3", 0) in inputs  # ours: longer fine-tuning
    assert plan.layout.metrics("GPT-toy-S", "tensorar-selfdraft", 0) in inputs
    # The longer runs get three times the steps, the same learning rates.
    args = plan.jobs.train_args("GPT-toy-S", "tensorar-default-x3", 0)
    assert args[args.index("--steps") + 1] == str(3 * plan.experiment.backbones["GPT-toy-S"].finetuning.steps)
    assert args[args.index("--mode") + 1] == "tensorar"


def test_the_paper_plan_runs_no_variant_of_ours_unless_asked(workflow_config):
    plan = Plan(workflow_config("paper.yaml"))
    ids = [c["id"] for c in plan.claims_manifest()["claims"]]
    assert "ours-b" not in ids and "ours-c" not in ids and "7" in ids
    config = workflow_config("paper.yaml")
    config["claims"]["ours"]["variants"] = ["selfdraft"]
    with pytest.raises(ValueError, match="claims.ours.backbone"):
        Plan(config)


def test_with_few_seeds_the_t_interval_must_agree(tmp_path):
    # Differences -1.0, -1.1, -0.2: every bootstrap resample of 3 seeds has a negative mean, but the t
    # interval (2 degrees of freedom) reaches above 0, so the claim is not called supported.
    a = write_runs(tmp_path, "a", [9.0, 8.9, 9.8])
    b = write_runs(tmp_path, "b", [10.0, 10.0, 10.0])
    test = verdict_of(paired(a, b))["tests"][0]
    assert test["interval"]["high"] < 0 < test["paired_t"]["high"]
    assert test["verdict"] == "inconclusive"
