"""The experiment plan (tensorar.plan): from the shipped, schema-validated configs to the typed
experiment, the runs, paths, stage arguments and manifests the rules wire together. What a rule runs is
decided here, so here it is checked, without Snakemake scheduling anything."""
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
    (t2i,) = toy.experiment.text_backbones()
    args = toy.jobs.train_args(t2i, "tensorar-default", 0)
    conditions = flag(args, "--conditions")
    assert conditions.startswith(flag(args, "--codes")) and conditions.endswith("conditions-toy")
    assert toy.jobs.train_inputs(t2i, "tensorar-default", 0)["conditions"] == f"{conditions}/conditions.json"
    assert flag(args, "--family") == "llamagen_t2i" and flag(args, "--init").endswith(f"{t2i}/base/seed0/final.pt")
    # Class-conditional backbones have no conditions folder.
    assert "--conditions" not in toy.jobs.train_args("GPT-toy-S", "base", 0)


def test_prompt_samples_use_the_backbones_encoder_and_sampling(toy, paper):
    (t2i,) = toy.experiment.text_backbones()
    args = toy.jobs.sample_prompts_args("geneval", t2i, "base", 1)
    assert flag(args, "--encoder") == "toy" and flag(args, "--layout") == "geneval" and flag(args, "--seed") == "1"
    assert flag(args, "--prompts").endswith("data/captions/geneval/evaluation_metadata.jsonl")  # made by make_captions
    assert flag(args, "--cfg-scale") == str(toy.experiment.backbones[t2i].sampling.cfg_scale)
    janus = paper.jobs.sample_prompts_args("dpg", "Janus-Pro-7B", "base", 0)
    assert flag(janus, "--encoder") == "janus" and flag(janus, "--prompt-length") == "256"
    assert flag(janus, "--prompts") == paper.experiment.benchmarks["dpg"].prompts  # the official set, a path


def test_toy_scores_with_our_detector_paper_with_the_official_raw_outputs(toy, paper):
    (t2i,) = toy.experiment.text_backbones()
    args = toy.jobs.score_args("geneval", t2i, "finetune", 0)
    assert flag(args, "--toy-classifier") == toy.layout.classifier() and "--raw" not in args
    official = paper.jobs.score_args("dpg", "LlamaGen-t2i-XL", "finetune", 0)
    assert flag(official, "--raw").endswith("bench/dpg/LlamaGen-t2i-XL/finetune/seed0/raw.jsonl")
    assert flag(official, "--questions") == paper.experiment.benchmarks["dpg"].questions
    detect = paper.jobs.detect_args("geneval", "LlamaGen-t2i-XL", "base", 0)
    assert flag(detect, "--images") == flag(paper.jobs.score_args("geneval", "LlamaGen-t2i-XL", "base", 0), "--images")


def test_benchmark_tables_list_every_run_of_every_seed(toy):
    manifest = toy.manifests.table_manifest("table3")
    (section,) = manifest["sections"]
    assert section["benchmark"] == "geneval" and len(section["rows"]) == 3 * len(toy.experiment.tables.table3.backbones)
    files = manifest_inputs(manifest)
    assert all("/bench/geneval/" in f for f in files)
    assert len(files) == 2 * len(section["rows"]) * len(toy.experiment.seeds)  # scores + sampler stats per seed


def test_paper_table3_has_the_papers_rows_and_the_other_methods(paper):
    sections = paper.manifests.table_manifest("table3")["sections"]
    assert [s["name"] for s in sections] == ["table3", "table3_other"]
    janus = [r for r in sections[0]["rows"] if r["cells"]["Model"].startswith("Janus")]
    assert janus[-1]["paper"]["overall"] == 0.83  # Janus-Pro-7B + TensorAR, GenEval overall (Table 3)


def test_every_table2_run_is_sampled_with_its_backbones_settings(paper):
    for backbone in paper.experiment.run_backbones():
        args = paper.jobs.sample_args(backbone, "base", 0, "final")
        assert flag(args, "--ckpt") == paper.experiment.backbones[backbone].checkpoint  # the official file
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
        for backbone, method in plan.experiment.timed_runs():
            args = build_parser().parse_args([*plan.jobs.timing_args(backbone, method), "--out", "t.json"])
            assert args.ckpt == plan.layout.checkpoint(backbone, method, plan.experiment.seeds[0])
            assert args.image_size == plan.experiment.backbones[backbone].eval_image_size
            assert args.cfg_scale == plan.experiment.backbones[backbone].sampling.cfg_scale
    # Table 2's rows and Table 6b's deeper plug-ins, first seed only.
    assert ("GPT-toy-S", "tensorar-depth4") in toy.experiment.timed_runs()
    assert toy.manifests.runs("GPT-toy-S", "base", timed=True)[0]["timing"] == toy.layout.timing("GPT-toy-S", "base")
    assert "timing" not in toy.manifests.runs("GPT-toy-S", "base")[0]


def test_the_config_is_read_once(toy_config):
    """After parsing, the plan answers from its typed experiment: editing the mapping changes nothing."""
    config = copy.deepcopy(toy_config)
    plan = Plan(config)
    before = (plan.jobs.train_args("GPT-toy-S", "tensorar-default", 0), plan.claims_manifest(),
              plan.manifests.table_manifest("table2"), plan.layout.targets())
    config["finetuning"]["steps"], config["experiment"] = 7, "other"
    config["backbones"]["GPT-toy-S"]["sampling"]["cfg_scale"] = 9.0
    config["tables"]["table2"]["backbones"].pop()
    after = (plan.jobs.train_args("GPT-toy-S", "tensorar-default", 0), plan.claims_manifest(),
             plan.manifests.table_manifest("table2"), plan.layout.targets())
    assert after == before
    assert plan.experiment.backbones["GPT-toy-S"].family.name == "llamagen"
    assert plan.experiment.variants["k2"].k == 2 and plan.experiment.backbones["GPT-toy-S"].finetuning.steps == 300


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["tables"]["fig5"].update(stride=3), r"tables\.fig5: unknown keys \['stride'\]"),
    (lambda c: c["backbones"]["GPT-toy-S"]["sampling"].update(top_p=2.0), r"top_p .*<= 1\.0"),
    (lambda c: c["backbones"]["GPT-toy-S"]["sampling"].update(top_q=1), r"backbones\.GPT-toy-S\.sampling: unknown"),
    (lambda c: c["finetuning"].update(lr=1), r"finetuning: unknown keys \['lr'\]"),
    (lambda c: c["timing"].pop("repeats"), r"timing: .*repeats"),
])
def test_parsing_names_the_bad_key(toy_config, edit, message):
    config = copy.deepcopy(toy_config)
    edit(config)
    with pytest.raises(ValueError, match=message):
        Plan(config)


def test_rules_take_their_paths_from_the_layout(repo_root):
    """Every path pattern of a rule is the layout's (one spelling), none an f-string of its own."""
    for smk in (repo_root / "workflow" / "rules").glob("*.smk"):
        code = "\n".join(line for line in smk.read_text().splitlines() if not line.lstrip().startswith("#"))
        assert 'f"{R}' not in code and '"results/' not in code, smk.name


def test_a_figure_step_past_the_finetuning_fails_when_the_plan_is_made(toy_config):
    """Fig. 5's checkpoint at a step training never reaches would fail only after training: refuse it now."""
    config = copy.deepcopy(toy_config)
    config["tables"]["fig5"]["steps"] = [100, 301]
    with pytest.raises(ValueError, match=r"tables\.fig5\.steps: step 301 is past the 300 fine-tuning steps"):
        Plan(config)
    config["tables"]["fig5"]["steps"] = [100, 300]  # the last step is the final checkpoint: allowed
    assert Plan(config).jobs.keep_steps("GPT-toy-S", "finetune") == (100, 300)


def test_paper_fine_tunes_for_the_papers_epochs(paper, workflow_config):
    """Appendix A.2: 20 epochs of ImageNet (class-to-image), 1 epoch of the BLIP-3o pretrain set (T2I)."""
    captions = workflow_config("paper.yaml")["captions"]["train_items"]
    lengths = {b: int(flag(paper.jobs.train_args(b, "tensorar-default", 0), "--steps"))
               for b, _ in paper.experiment.tensorar_runs()}
    assert lengths["LlamaGen-B-256"] == lengths["Open-MAGVIT2-L"] == -(-20 * 1_281_167 // 256) == 100_092
    assert lengths["LlamaGen-t2i-XL"] == lengths["Janus-Pro-7B"] == -(-captions // 256)
    # The control gets the same steps; Fig. 5's kept checkpoints lie inside the run.
    assert flag(paper.jobs.train_args("LlamaGen-B-256", "finetune", 0), "--steps") == "100092"
    assert max(paper.experiment.tables.fig5.steps) < lengths["LlamaGen-B-256"]


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["dataset"].update(train_items=None), r"dataset\.train_items: the number of training items"),
    (lambda c: c["captions"].pop("train_items"), r"captions\.train_items"),
    (lambda c: c["finetuning"]["epochs"].pop("captions"), r"finetuning\.epochs\.captions: needed"),
    (lambda c: c["finetuning"].update(steps=10), r"finetuning: set steps or epochs, not both"),
])
def test_lengths_in_epochs_need_the_data_size(workflow_config, edit, message):
    config = workflow_config("paper.yaml")
    edit(config)
    with pytest.raises(ValueError, match=message):
        Plan(config)


def test_toy_lengths_in_epochs_count_the_canvases(toy_config):
    config = copy.deepcopy(toy_config)
    config["finetuning"].pop("steps")
    config["finetuning"]["epochs"] = {"captions": 2, "images": 1}
    config["dataset"]["train_items"] = 1437
    config["tables"]["fig5"]["steps"] = [10, 20]
    plan = Plan(config)
    assert plan.experiment.backbones["LlamaGen-t2i-toy"].finetuning.steps == -(-2 * 6000 // 64)  # num_train
    assert plan.experiment.backbones["GPT-toy-S"].finetuning.steps == -(-1437 // 64)


def test_caption_codes_are_centre_cropped_and_never_flipped(paper, toy):
    """A flip turns "a dog left of a cat" into a wrong caption; LlamaGen's T2I codes are centre crops."""
    for plan, images, captions in ((paper, "vq16", "vq16_t2i"), (toy, "vq", "canvas")):
        text = plan.jobs.extract_codes_args(captions, "train", 256)
        assert flag(text, "--augment") == "center" and "--no-flip" in text
    ten_crop = paper.jobs.extract_codes_args("vq16", "train", 256)
    assert flag(ten_crop, "--augment") == "tencrop" and "--no-flip" not in ten_crop
    assert flag(paper.jobs.extract_codes_args("janus_vq", "train", 384), "--augment") == "center"


def test_paper_times_at_the_papers_batch_of_128(paper):
    """Sec. 3.1.3: throughput at batch 128 (generation and VQ decoding)."""
    for backbone, method in paper.experiment.timed_runs():
        assert flag(paper.jobs.timing_args(backbone, method), "--batch-size") == "128"
