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
from tensorar.reporting.claim_texts import CLAIMS
from tensorar.reporting.claims import evaluate_claims, render, write_claims
from tensorar.reporting.gates import INDICATIVE, INVALID, NO_INTERVAL, NOT_TESTABLE, combine
from tensorar.stages.tables import main as tables_main


def config_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "config"


PROVENANCE = {"config_hash": "x", "experiment": "toy", "dataset": "digits", "seeds": [0], "feature_network": "toy",
              "num_samples": 10}
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


def test_one_seed_uses_the_sample_bootstrap_and_is_only_indicative(tmp_path):
    # FIDs 1.0 apart with replicates of SD 0.1: the sampling noise alone separates them, but one seed says
    # nothing about the seed-to-seed spread, so no verdict: "indicative", with what the interval says beside.
    a = write_runs(tmp_path, "a", [10.0], replicate_sd=0.1)
    b = write_runs(tmp_path, "b", [11.0], replicate_sd=0.1, seed=1)
    result = verdict_of(paired(a, b))
    test = result["tests"][0]
    assert result["verdict"] == test["verdict"] == INDICATIVE
    assert test["interval_reading"] == "supported" and "1 seed" in test["reason"]
    assert test["interval"]["method"] == "sample bootstrap"
    # Recentred: the interval is around the FID difference, not shifted by the replicates' bias (+0.3 each).
    assert test["interval"]["low"] < -1.0 < test["interval"]["high"] < -0.5
    # SD 2 per FID: the same gap is within the sampling noise.
    noisy = write_runs(tmp_path, "noisy", [10.0], replicate_sd=2.0)
    assert verdict_of(paired(noisy, b))["tests"][0]["interval_reading"] == "inconclusive"
    bare_a, bare_b = write_runs(tmp_path, "bare_a", [10.0]), write_runs(tmp_path, "bare_b", [11.0])
    result = verdict_of(paired(bare_a, bare_b))
    assert result["verdict"] == NO_INTERVAL and "low" not in result["tests"][0]["interval"]


def test_simulated_one_seed_runs_never_give_a_bold_verdict(tmp_path):
    """No true difference, seed-to-seed spread 1.5 toy-FID, sampling noise 0.2: a one-seed interval that
    ignores the seed spread would call most of these runs; the gate calls none."""
    rng = np.random.default_rng(5)
    reports = []
    for i in range(20):
        a = write_runs(tmp_path, f"a{i}", [10.0 + 1.5 * rng.standard_normal()], replicate_sd=0.2, seed=2 * i)
        b = write_runs(tmp_path, f"b{i}", [10.0 + 1.5 * rng.standard_normal()], replicate_sd=0.2, seed=2 * i + 1)
        manifest = one_claim(paired(a, b))
        results = evaluate_claims(manifest)
        reports.append((results, render({**manifest, "provenance": PROVENANCE}, results)))
    readings = [r[0][0]["tests"][0]["interval_reading"] for r in reports]
    assert sum(v != "inconclusive" for v in readings) >= 10  # what the ungated rule would have printed
    assert all(r[0][0]["verdict"] == INDICATIVE for r in reports)
    assert not any("**supported**" in text or "**contradicted**" in text for _, text in reports)


def test_monotonic_trend_needs_every_step(tmp_path):
    k2, k4, k8 = (write_runs(tmp_path, n, f) for n, f in
                  (("k2", [12.0, 12.2, 11.9]), ("k4", [10.0, 10.1, 9.9]), ("k8", [8.0, 8.3, 7.9])))
    trend = {"kind": "trend", "metric": "fid", "unit": "FID", "label": "k", "direction": "decreasing",
             "arms": [{"label": "k=2", "runs": k2}, {"label": "k=4", "runs": k4}, {"label": "k=8", "runs": k8}]}
    result = verdict_of(trend)
    assert result["verdict"] == "supported" and len(result["tests"][0]["steps"]) == 2
    assert len(result["tests"][0]["paired_t_steps"]) == 2
    trend["arms"] = [trend["arms"][0], trend["arms"][2], trend["arms"][1]]  # 12 -> 8 -> 10: one step goes up
    assert verdict_of(trend)["verdict"] == "contradicted"


def test_a_trend_step_needs_its_t_interval_to_agree(tmp_path):
    # Step k=4 -> k=8 rises by +1.0, +1.1, +0.2: every bootstrap resample of 3 seeds is above 0 (the
    # bootstrap alone would say "contradicted"), but the t interval reaches below 0.
    k4 = write_runs(tmp_path, "k4", [10.0, 10.0, 10.0])
    k8 = write_runs(tmp_path, "k8", [11.0, 11.1, 10.2])
    trend = {"kind": "trend", "metric": "fid", "unit": "FID", "label": "k", "direction": "decreasing",
             "arms": [{"label": "k=4", "runs": k4}, {"label": "k=8", "runs": k8}]}
    test = verdict_of(trend)["tests"][0]
    assert test["steps"][0]["low"] > 0 > test["paired_t_steps"][0]["low"]
    assert test["step_verdicts"] == ["inconclusive"] and test["verdict"] == "inconclusive"


def test_replicates_are_paired_when_both_arms_resampled_the_same_samples(tmp_path):
    def runs(name, fid, shared, own_sd, seed, boot_seed=0):
        rng = np.random.default_rng(seed)
        reps = fid + shared + own_sd * rng.standard_normal(len(shared))
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"fid": fid, "fid_bootstrap": {"replicates": reps.tolist(), "seed": boot_seed,
                                                                  "n_samples": 100}}))
        return [{"seed": 0, "metrics": str(path)}]

    shared = np.random.default_rng(9).standard_normal(400)  # the noise both arms' samples share
    a, b = runs("a", 10.0, shared, 0.2, 1), runs("b", 11.0, shared, 0.2, 2)
    together = verdict_of(paired(a, b))["tests"][0]
    apart = verdict_of(paired(a, runs("c", 11.0, shared, 0.2, 2, boot_seed=1)))["tests"][0]
    assert together["paired_replicates"] and not apart["paired_replicates"]
    width = lambda t: t["interval"]["high"] - t["interval"]["low"]  # noqa: E731
    assert width(together) < 0.5 * width(apart)
    assert together["interval_reading"] == "supported" and apart["interval_reading"] == "inconclusive"


def timing_file(tmp_path, name, models: dict[str, list[float]]) -> str:
    """A TIMING.json of one interleaved job, as tensorar time_sampling writes it (the fields claims read)."""
    path = tmp_path / f"{name}.json"
    repeats = len(next(iter(models.values())))
    path.write_text(json.dumps({"repeats": repeats, "models": {m: {"latency_s": {"values": v}} for m, v in
                                                                 models.items()}}))
    return str(path)


def jittered(mean, n=12, sd=0.001, seed=0):
    return (mean + sd * np.random.default_rng(seed).standard_normal(n)).tolist()


TIMING = {"kind": "timing", "label": "latency", "a": "tensorar", "b": "base", "aa": ["finetune", "base"],
          "side": "less", "null": 0.25, "relative": True, "unit": "%"}


def test_timing_is_judged_against_its_threshold(tmp_path):
    base, control = jittered(0.100, seed=1), jittered(0.100, seed=2)
    job = timing_file(tmp_path, "job", {"base": base, "finetune": control, "tensorar": jittered(0.110, seed=3),
                                        "double": jittered(0.200, seed=4)})
    result = verdict_of({**TIMING, "timing": job})
    test = result["tests"][0]
    assert result["verdict"] == "supported" and test["aa"]["passed"]
    assert test["interval"]["estimate"] == pytest.approx(0.10, abs=0.02)
    assert verdict_of({**TIMING, "timing": job, "a": "double"})["verdict"] == "contradicted"
    slower = {**TIMING, "side": "greater", "null": 0.0, "relative": False, "unit": "s"}
    assert verdict_of({**slower, "timing": job})["verdict"] == "supported"


def test_timing_is_invalid_without_a_passing_aa_check_enough_rounds_or_one_job(tmp_path):
    base = jittered(0.100, seed=1)
    # The control (same architecture as the base) 20 % slower in the same job: the machine, not the model.
    shifted = timing_file(tmp_path, "shifted", {"base": base, "finetune": jittered(0.120, seed=2),
                                                "tensorar": jittered(0.110, seed=3)})
    result = verdict_of({**TIMING, "timing": shifted})
    test = result["tests"][0]
    assert result["verdict"] == test["verdict"] == INVALID and "A/A check failed" in test["reason"]
    assert not test["aa"]["passed"] and test["interval_reading"] == "supported"
    few = timing_file(tmp_path, "few", {m: jittered(0.1, n=5, seed=i) for i, m in enumerate(("base", "finetune", "tensorar"))})
    assert "5 repeats" in verdict_of({**TIMING, "timing": few})["tests"][0]["reason"]
    no_control = timing_file(tmp_path, "no_control", {"base": base, "tensorar": jittered(0.11, seed=3)})
    assert "no A/A pair" in verdict_of({**TIMING, "timing": no_control})["tests"][0]["reason"]
    separate = tmp_path / "separate.json"  # the old one-model-per-job file
    separate.write_text(json.dumps({"repeats": 12, "latency_s": {"values": base}}))
    test = verdict_of({**TIMING, "timing": str(separate)})["tests"][0]
    assert test["verdict"] == INVALID and "separate jobs" in test["reason"]


def test_overhead_range_toy_rows_and_tests_outside_the_verdict(tmp_path):
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"model": {"parameters": 1030, "base_parameters": 1000}}))
    inside = {"kind": "overhead", "label": "m", "stats": str(stats), "range": [1.5, 4.6]}
    assert verdict_of(inside)["verdict"] == "supported"
    assert verdict_of({**inside, "range": [4.0, 5.0]})["verdict"] == "contradicted"
    # Counts given inline (the paper's presets, counted on the meta device) decide; a toy row does not.
    preset = {"kind": "overhead", "label": "GPT-B", "parameters": 1064, "base_parameters": 1000, "range": [1.5, 4.6],
              "paper": "+4.6%"}
    toy = {**inside, "label": "toy", "toy": True}
    result = verdict_of(preset, toy)
    assert result["verdict"] == "contradicted" and result["tests"][0]["estimate"] == pytest.approx(6.4)
    assert result["tests"][1]["verdict"] == "n/a (toy scale)" and not result["tests"][1]["in_verdict"]
    worse = write_runs(tmp_path, "w", [12.0, 12.3, 11.9])
    better = write_runs(tmp_path, "b", [10.0, 10.4, 9.8])
    # A contradicted side test marked in_verdict: false does not decide the claim.
    assert verdict_of(inside, paired(worse, better, in_verdict=False))["verdict"] == "supported"


def scores_runs(tmp_path, name, overall, seeds=3):
    runs = []
    for s in range(seeds):
        path = tmp_path / f"{name}-{s}.json"
        path.write_text(json.dumps({"scores": {"overall": overall + 0.01 * s}}))
        runs.append({"seed": s, "metrics": str(path)})
    return runs


def test_text_to_image_is_not_testable_unless_the_base_beats_its_floor(tmp_path):
    floor = tmp_path / "floor.json"
    floor.write_text(json.dumps({"scores": {"overall": 0.029}}))
    at_chance, tensorar = scores_runs(tmp_path, "base", 0.030), scores_runs(tmp_path, "tar", 0.042)
    test = {"kind": "paired", "metric": "overall", "unit": "score", "side": "greater", "label": "geneval",
            "a": tensorar, "b": at_chance, "floor": {"metrics": str(floor), "base": at_chance, "full_scale": 1.0}}
    found = verdict_of(test)
    assert found["verdict"] == NOT_TESTABLE and "floor" in found["tests"][0]["reason"]
    assert found["tests"][0]["interval_reading"] == "supported"  # what it would have said
    assert verdict_of({**test, "floor": {"metrics": None, "base": at_chance, "full_scale": 1.0}})["verdict"] == NOT_TESTABLE
    following = scores_runs(tmp_path, "good", 0.50)
    better = scores_runs(tmp_path, "better", 0.60)
    assert verdict_of({**test, "a": better, "b": following,
                       "floor": {"metrics": str(floor), "base": following, "full_scale": 1.0}})["verdict"] == "supported"


def test_the_geneval_floor_is_the_bases_own_detections_against_shuffled_prompts(tmp_path):
    classes = ("cat", "dog", "car", "bus", "cup")

    def write_raw(path, drawn):  # prompt i asks for classes[i]; the image shows drawn(classes[i])
        path.write_text("".join(json.dumps({
            "filename": f"{i:05d}/samples/0000.png",
            "metadata": {"tag": "single_object", "include": [{"class": n, "count": 1}], "prompt": f"a {n}"},
            "detections": {drawn(n): {"boxes": [[0, 0, 10, 10]], "scores": [0.99], "colors": ["red"]}}}) + "\n"
            for i, n in enumerate(classes)))
        return path

    def runs(name, overall, raws):
        out = []
        for s, raw in enumerate(raws):
            path = tmp_path / f"{name}-{s}.json"
            path.write_text(json.dumps({"scores": {"overall": overall + 0.01 * s}, "raw": str(raw)}))
            out.append({"seed": s, "metrics": str(path)})
        return out

    # The base draws what it is asked (floor 0), or a cat whatever it is asked (floor = its own score).
    follows = [write_raw(tmp_path / f"f{s}.jsonl", lambda n: n) for s in range(3)]
    ignores = [write_raw(tmp_path / f"i{s}.jsonl", lambda n: "cat") for s in range(3)]
    for raws, base_score, expected in ((follows, 0.60, "supported"), (ignores, 0.20, NOT_TESTABLE)):
        base, tensorar = runs("base", base_score, raws), scores_runs(tmp_path, "tar", base_score + 0.1)
        test = {"kind": "paired", "metric": "overall", "unit": "score", "side": "greater", "label": "geneval",
                "a": tensorar, "b": base, "floor": {"shuffled_seed": 0, "base": base, "full_scale": 1.0}}
        found = verdict_of(test)
        assert found["verdict"] == expected
        assert found["tests"][0]["floor"]["score"] == pytest.approx(0.0 if raws is follows else 0.2)


def test_combine():
    assert combine(["supported", "supported"]) == "supported"
    assert combine(["supported", "inconclusive"]) == "inconclusive"
    assert combine(["supported", "contradicted", "inconclusive"]) == "contradicted"
    assert combine([NO_INTERVAL, NO_INTERVAL]) == NO_INTERVAL
    assert combine(["supported", INDICATIVE]) == INDICATIVE
    assert combine([INDICATIVE, INVALID]) == INVALID
    assert combine(["inconclusive", INDICATIVE]) == "inconclusive"


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
    assert plan.layout.timing("GPT-toy-S") in inputs  # claims 5-6: one interleaved job per backbone
    by_id = {c["id"]: c for c in manifest["claims"]}
    latency = by_id["5"]["tests"][-1]
    assert (latency["a"], latency["b"], latency["aa"]) == ("tensorar-depth4", "tensorar-depth2", ["finetune", "base"])
    assert [t["timing"] for t in by_id["6"]["tests"]] == [plan.layout.timing(b) for b in ("GPT-toy-S", "GPT-toy-M", "OMV-toy")]
    # 2b is its own claim; the literal loss weights are claim 3b, not a schedule of claim 3.
    assert all("control - base" in t["label"] for t in by_id["2"]["tests"])
    assert [t["label"] for t in by_id["3b"]["tests"]] == ["GPT-toy-S: literal - base", "GPT-toy-S: literal - ours (rdm)"]
    assert not any("literal" in t["label"] for t in by_id["3"]["tests"])
    # Claim 7 names what it tests, gates on a floor, and puts TensorAR - control beside it.
    assert by_id["7"]["scope"] == "tested here: LlamaGen-t2i-toy; not run: Janus-Pro-7B"
    assert all(t["floor"]["base"] for t in by_id["7"]["tests"])
    assert [t.get("in_verdict", True) for t in by_id["7"]["tests"]] == [True, False, True, False]
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


def test_claim_1b_is_decided_at_the_papers_presets_and_the_toy_is_na(workflow_config, tmp_path):
    plan = Plan(copy.deepcopy(workflow_config("config.yaml")))
    claim = next(c for c in plan.claims_manifest()["claims"] if c["id"] == "1b")
    presets = [t for t in claim["tests"] if "parameters" in t]
    assert [t["label"] for t in presets][:3] == ["Open-MAGVIT2-B (256x256)", "Open-MAGVIT2-L (256x256)",
                                                 "LlamaGen-B (256x256)"]
    gpt_b = next(t for t in presets if t["label"] == "LlamaGen-B (256x256)")
    assert gpt_b["base_parameters"] == 110_888_448 and gpt_b["paper"] == "+4.6%"  # LlamaGen's 111M
    assert all(t["toy"] for t in claim["tests"] if "stats" in t)
    # Evaluated: GPT-B's +6.4% is outside the paper's range, so the claim is contradicted at the paper's sizes.
    toy_stats = tmp_path / "stats.json"
    toy_stats.write_text(json.dumps({"model": {"parameters": 125, "base_parameters": 100}}))
    tests = presets + [{**t, "stats": str(toy_stats)} for t in claim["tests"] if "stats" in t]
    result = verdict_of(*tests)
    gpt_b = next(t for t in result["tests"] if t["label"] == "LlamaGen-B (256x256)")
    assert gpt_b["estimate"] == pytest.approx(6.39, abs=0.01) and gpt_b["verdict"] == "contradicted"
    assert result["verdict"] == "contradicted"
    assert all(t["verdict"] == "n/a (toy scale)" for t in result["tests"] if "(toy)" in t["label"])


def test_with_few_seeds_the_t_interval_must_agree(tmp_path):
    # Differences -1.0, -1.1, -0.2: every bootstrap resample of 3 seeds has a negative mean, but the t
    # interval (2 degrees of freedom) reaches above 0, so the claim is not called supported.
    a = write_runs(tmp_path, "a", [9.0, 8.9, 9.8])
    b = write_runs(tmp_path, "b", [10.0, 10.0, 10.0])
    test = verdict_of(paired(a, b))["tests"][0]
    assert test["interval"]["high"] < 0 < test["paired_t"]["high"]
    assert test["verdict"] == "inconclusive"
