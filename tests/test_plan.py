"""The experiment plan (tensorar.plan): from the shipped, schema-validated configs to the runs, paths,
stage arguments and manifests the rules wire together. What a rule runs is decided here, so here it is
checked, without Snakemake scheduling anything."""
from __future__ import annotations

import copy

import pytest

from tensorar.plan import Plan, manifest_inputs


@pytest.fixture(scope="module")
def toy_config(workflow_config) -> dict:
    return workflow_config("config.yaml")


@pytest.fixture(scope="module")
def toy(toy_config) -> Plan:
    return Plan(copy.deepcopy(toy_config))


@pytest.fixture(scope="module")
def paper(workflow_config) -> Plan:
    return Plan(workflow_config("paper.yaml"))


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_text_backbone_trains_and_samples_on_its_stored_conditions(toy):
    (t2i,) = toy.text_backbones()
    args = toy.train_args(t2i, "tensorar-default", 0)
    conditions = flag(args, "--conditions")
    assert conditions.startswith(flag(args, "--codes")) and conditions.endswith("conditions-toy")
    assert toy.train_inputs(t2i, "tensorar-default", 0)["conditions"] == f"{conditions}/conditions.json"
    assert flag(args, "--family") == "llamagen_t2i" and flag(args, "--init").endswith(f"{t2i}/base/seed0/final.pt")
    # Class-conditional backbones have no conditions folder.
    assert "--conditions" not in toy.train_args("GPT-toy-S", "base", 0)


def test_prompt_samples_use_the_backbones_encoder_and_sampling(toy, paper):
    (t2i,) = toy.text_backbones()
    args = toy.sample_prompts_args("geneval", t2i, "base", 1)
    assert flag(args, "--encoder") == "toy" and flag(args, "--layout") == "geneval" and flag(args, "--seed") == "1"
    assert flag(args, "--prompts").endswith("data/captions/geneval/evaluation_metadata.jsonl")  # made by make_captions
    assert flag(args, "--cfg-scale") == str(toy.backbones[t2i]["sampling"]["cfg_scale"])
    janus = paper.sample_prompts_args("dpg", "Janus-Pro-7B", "base", 0)
    assert flag(janus, "--encoder") == "janus" and flag(janus, "--prompt-length") == "256"
    assert flag(janus, "--prompts") == paper.config["benchmarks"]["dpg"]["prompts"]  # the official set, a path


def test_toy_scores_with_our_detector_paper_with_the_official_raw_outputs(toy, paper):
    (t2i,) = toy.text_backbones()
    args = toy.score_args("geneval", t2i, "finetune", 0)
    assert flag(args, "--toy-classifier") == toy.classifier() and "--raw" not in args
    official = paper.score_args("dpg", "LlamaGen-t2i-XL", "finetune", 0)
    assert flag(official, "--raw").endswith("bench/dpg/LlamaGen-t2i-XL/finetune/seed0/raw.jsonl")
    assert flag(official, "--questions") == paper.config["benchmarks"]["dpg"]["questions"]
    detect = paper.detect_args("geneval", "LlamaGen-t2i-XL", "base", 0)
    assert flag(detect, "--images") == flag(paper.score_args("geneval", "LlamaGen-t2i-XL", "base", 0), "--images")


def test_benchmark_tables_list_every_run_of_every_seed(toy):
    manifest = toy.table_manifest("table3")
    (section,) = manifest["sections"]
    assert section["benchmark"] == "geneval" and len(section["rows"]) == 3 * len(toy.tables["table3"]["backbones"])
    files = manifest_inputs(manifest)
    assert all("/bench/geneval/" in f for f in files)
    assert len(files) == 2 * len(section["rows"]) * len(toy.seeds)  # scores + sampler stats per seed


def test_paper_table3_has_the_papers_rows_and_the_other_methods(paper):
    sections = paper.table_manifest("table3")["sections"]
    assert [s["name"] for s in sections] == ["table3", "table3_other"]
    janus = [r for r in sections[0]["rows"] if r["cells"]["Model"].startswith("Janus")]
    assert janus[-1]["paper"]["overall"] == 0.83  # Janus-Pro-7B + TensorAR, GenEval overall (Table 3)


def test_every_table2_run_is_sampled_with_its_backbones_settings(paper):
    for backbone in paper.run_backbones():
        args = paper.sample_args(backbone, "base", 0, "final")
        assert flag(args, "--ckpt") == paper.backbones[backbone]["checkpoint"]  # the official file
        assert flag(args, "--num-samples") == "50000"


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["tables"]["table3"]["backbones"].append("GPT-toy-S"), "tables.table3.backbones: 'GPT-toy-S' is class"),
    (lambda c: c["tables"]["table2"]["backbones"].append("LlamaGen-t2i-toy"), "text-conditioned"),
    (lambda c: c["backbones"]["LlamaGen-t2i-toy"].pop("text_encoder"), "backbones.LlamaGen-t2i-toy.text_encoder"),
    (lambda c: c["backbones"]["LlamaGen-t2i-toy"].update(tokenizer="vq"), "backbones.LlamaGen-t2i-toy.tokenizer"),
    (lambda c: c["tables"]["table5"].update(backbone="nope"), "tables.table5.backbone: unknown backbone 'nope'"),
])
def test_cross_references_name_the_bad_key(toy_config, edit, message):
    config = copy.deepcopy(toy_config)
    edit(config)
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        Plan(config)


def test_timing_jobs_time_the_sampled_models_with_their_settings(toy, paper):
    from tensorar.stages.time_sampling import build_parser

    for plan in (toy, paper):
        for backbone, method in plan.timed_runs():
            args = build_parser().parse_args([*plan.timing_args(backbone, method), "--out", "t.json"])
            assert args.ckpt == plan.checkpoint(backbone, method, plan.seeds[0])
            assert args.image_size == plan.backbones[backbone]["eval_image_size"]
            assert args.cfg_scale == plan.sampling_options(backbone).cfg_scale
    # Table 2's rows and Table 6b's deeper plug-ins, first seed only.
    assert ("GPT-toy-S", "tensorar-depth4") in toy.timed_runs()
    assert toy.runs("GPT-toy-S", "base", timed=True)[0]["timing"] == toy.timing("GPT-toy-S", "base")
    assert "timing" not in toy.runs("GPT-toy-S", "base")[0]
