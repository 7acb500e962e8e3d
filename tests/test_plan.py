"""The experiment plan (tensorar.plan): from the shipped, schema-validated configs to the typed
experiment, the runs, paths, stage arguments and manifests the rules wire together. What a rule runs is
decided here, so here it is checked, without Snakemake scheduling anything."""
from __future__ import annotations

import copy
import re

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
    # Ours: the toy's seen prompts (made by make_captions with the config's fraction) scored apart.
    assert flag(args, "--seen-prompts").endswith("data/captions/geneval/seen_prompts.txt")
    assert "--seen-prompts" not in toy.jobs.score_args("dpg", t2i, "finetune", 0)
    assert flag(toy.jobs.make_captions_args(), "--seen-fraction") == str(toy.experiment.captions.seen_fraction)
    official = paper.jobs.score_args("dpg", "LlamaGen-t2i-XL", "finetune", 0)
    assert "--seen-prompts" not in paper.jobs.score_args("geneval", "LlamaGen-t2i-XL", "finetune", 0)
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


def test_timing_jobs_time_each_backbones_models_together_with_their_settings(toy, paper):
    from tensorar.stages.time_sampling import build_parser, named_checkpoints

    for plan in (toy, paper):
        seed = plan.experiment.seeds[0]
        for backbone in plan.experiment.timed_backbones():
            args = build_parser().parse_args([*plan.jobs.timing_args(backbone), "--out", "t.json"])
            methods = plan.experiment.timed_models(backbone)
            assert methods[:2] == ["base", "finetune"]  # claims.md's A/A pair, base first (the reference)
            assert named_checkpoints(args.ckpt) == {m: plan.layout.checkpoint(backbone, m, seed) for m in methods}
            assert args.image_size == plan.experiment.backbones[backbone].eval_image_size
            assert args.cfg_scale == plan.experiment.backbones[backbone].sampling.cfg_scale
            assert args.repeats >= 10
            ckpts = {k for k in plan.jobs.timing_inputs(backbone) if k.startswith("ckpt_")}
            assert ckpts == {f"ckpt_{m}" for m in methods if m != "base" or not
                             plan.experiment.backbones[backbone].official_base}
    # Table 2's rows and Table 6b's deeper plug-ins, first seed only, in one job per backbone.
    assert toy.experiment.timed_models("GPT-toy-S") == ["base", "finetune", "tensorar-default", "tensorar-depth2",
                                                        "tensorar-depth4"]
    timed = toy.manifests.runs("GPT-toy-S", "tensorar-depth4", timed=True)[0]
    assert (timed["timing"], timed["timed_model"]) == (toy.layout.timing("GPT-toy-S"), "tensorar-depth4")
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
    for backbone in paper.experiment.timed_backbones():
        assert flag(paper.jobs.timing_args(backbone), "--batch-size") == "128"


# --------------------------------------------------------------------------------------------------
# Cluster wiring (what a job asks Slurm for; the profile and README that go with it)
# --------------------------------------------------------------------------------------------------
def test_training_jobs_are_signalled_before_their_time_limit(paper, toy):
    lead = paper.experiment.cluster.train_signal_lead
    assert lead and paper.cluster.job_resources("train", "Janus-Pro-7B")["slurm_extra"] == f"--signal=TERM@{lead}"
    assert paper.cluster.job_resources("time_sampling")["slurm_extra"] == "--exclusive"  # kept, not signalled
    assert "slurm_extra" not in toy.cluster.job_resources("train", "GPT-toy-S")  # the toy sets no lead


def test_each_job_asks_for_the_gpus_it_uses(paper):
    assert paper.cluster.job_resources("drafts")["gpu"] == 1  # 4 images, not an 8-GPU sampling job
    assert paper.cluster.job_resources("geneval_detect")["constraint"] == "a100"  # CUDA 11.3 mmcv: no sm_90
    assert "constraint" not in paper.cluster.job_resources("dpg_vqa")
    local = set(paper.cluster.local_rules())
    assert {"table", "diagnostics", "figures", "claims", "score_benchmark"} <= local
    assert not local & {"train", "sample", "drafts", "evaluate", "geneval_detect", "dpg_vqa", "time_sampling"}


def test_cpu_jobs_go_to_the_configured_partition(workflow_config):
    config = workflow_config("paper.yaml")
    config["cluster"].update(cpu_jobs="submit", cpu_partition="cpu")
    plan = Plan(config)
    assert plan.cluster.local_rules() == []
    assert plan.cluster.job_resources("claims")["slurm_partition"] == "cpu"
    assert "slurm_partition" not in plan.cluster.job_resources("train", "LlamaGen-B-256")


def test_every_rule_has_a_resource_stage(repo_root):
    from tensorar.plan.cluster import RULE_STAGES

    rules = {m for smk in (repo_root / "workflow" / "rules").glob("*.smk")
             for m in re.findall(r"^rule (\w+):", smk.read_text(), flags=re.M)}
    assert rules == set(RULE_STAGES)


def test_the_slurm_profile_deploys_conda_and_the_readme_lists_every_released_file(repo_root, workflow_config):
    import yaml

    profile = yaml.safe_load((repo_root / "slurm" / "config.yaml").read_text())
    assert profile["software-deployment-method"] == "conda"
    readme = (repo_root / "README.md").read_text()
    section = readme.split("## Paper scale on SLURM")[1].split("\n## ")[0]
    assert "snakemake --profile slurm results/table2.md" in section

    def paths(node):
        if isinstance(node, dict):
            return [p for v in node.values() for p in paths(v)]
        return [node] if isinstance(node, str) and node.startswith("pretrained/") else []

    released = {p.removeprefix("pretrained/") for p in paths(workflow_config("paper.yaml"))}
    assert len(released) >= 15 and not [name for name in released if name not in section]


def test_jobs_argument_lists_parse_back_into_the_plans_options(toy, paper):
    """The plan writes the sampling stages' argument lists from the stages' own option dataclasses
    (to_arguments), so each stage's parser reads them back into exactly the options the plan meant."""
    from tensorar.decoding.sampling import SamplingOptions
    from tensorar.options import from_arguments
    from tensorar.sampling.options import DiagnoseOptions, ModelSource
    from tensorar.stages import diagnose, sample, sample_prompts

    for plan in (toy, paper):
        e, seed = plan.experiment, plan.experiment.seeds[0]
        for backbone, variant in e.tensorar_runs():
            spec = e.backbones[backbone]
            for method in ("base", f"tensorar-{variant}"):
                official = method == "base" and spec.official_base
                if not spec.text:
                    parser = sample.build_parser()
                    args = parser.parse_args([*plan.jobs.sample_args(backbone, method, seed, "final"), "--out", "s.npz"])
                else:
                    parser = sample_prompts.build_parser()
                    bench = next(iter(e.benchmarks))
                    args = parser.parse_args([*plan.jobs.sample_prompts_args(bench, backbone, method, seed), "--out", "o"])
                    assert args.encoder == e.text_encoders[spec.text_encoder].kind and args.layout == bench
                source = from_arguments(parser, args, ModelSource)
                assert source == plan.jobs.model_source(backbone, plan.layout.checkpoint(backbone, method, seed),
                                                        official=official)
                assert (source.preset, source.family) == ((spec.preset, spec.family.name) if official else (None, None))
                assert from_arguments(parser, args, SamplingOptions) == plan.jobs.sampling_options(backbone)
            parser = diagnose.build_parser()
            args = parser.parse_args([*plan.jobs.diagnose_args(backbone, variant, seed), "--out", "d.json"])
            options = from_arguments(parser, args, DiagnoseOptions)
            assert options.base == plan.layout.base_checkpoint(backbone, seed)
            assert options.num_samples == e.diagnostics_samples
            assert from_arguments(parser, args, ModelSource).preset == (spec.preset if spec.official_base else None)


# ----- the memory plan's strategy per job, GPU memory and sampling protocol from config -----
STRATEGY_FLAGS = ("--strategy", "--activation-checkpointing", "--no-activation-checkpointing", "--micro-batch-size")


def strategy_of(args: list[str]) -> tuple[str, bool, str]:
    return flag(args, "--strategy"), "--activation-checkpointing" in args, flag(args, "--micro-batch-size")


def test_paper_plan_shards_and_checkpoints_xxl_and_janus_and_keeps_ddp_elsewhere(paper):
    """GPT-XXL and Janus-Pro-7B do not fit an 80 GB GPU as DDP replicas (issue 22): the plan writes
    FSDP + activation checkpointing into their train arguments; a model that fits stays DDP."""
    for backbone in ("LlamaGen-XXL-384", "Janus-Pro-7B"):
        for method in ("finetune", "tensorar-default"):
            assert strategy_of(paper.jobs.train_args(backbone, method, 0)) == ("fsdp", True, "0"), (backbone, method)
    assert strategy_of(paper.jobs.train_args("LlamaGen-B-256", "tensorar-default", 0)) == ("ddp", False, "0")
    planned = {p.job.name: p for p in paper.jobs.memory_plan}
    choice = planned["train LlamaGen-XXL-384 tensorar-default"].choice
    assert (choice.strategy, choice.activation_checkpointing) == ("fsdp", True)
    assert planned["train LlamaGen-XXL-384 tensorar-default"].job.gpu_bytes == 81920 * 2**20  # from the config


def test_a_too_small_gpu_makes_the_plan_refuse_naming_the_job(workflow_config):
    config = workflow_config("paper.yaml")
    config["resources"]["train"]["gpu_mem_mb"] = 4000
    plan = Plan(config)
    with pytest.raises(ValueError, match=r"train LlamaGen-XXL-384 finetune: no strategy fits .* GiB"):
        plan.jobs.train_args("LlamaGen-XXL-384", "finetune", 0)
    assert "gpu_mem_mb" not in plan.cluster.job_resources("train", "LlamaGen-XXL-384")  # not a scheduler request


def test_a_strategy_set_in_the_config_is_used_only_if_it_fits(workflow_config):
    config = workflow_config("paper.yaml")
    config["finetuning"]["strategy"] = "fsdp"  # without checkpointing: fits GPT-B, not GPT-XXL at 32 per GPU
    plan = Plan(config)
    assert strategy_of(plan.jobs.train_args("LlamaGen-B-256", "finetune", 0)) == ("fsdp", False, "0")
    with pytest.raises(ValueError, match=r"train LlamaGen-XXL-384 finetune: the config's strategy does not fit"):
        plan.jobs.train_args("LlamaGen-XXL-384", "finetune", 0)


def test_paper_sampling_jobs_carry_the_official_protocol(paper):
    """LlamaGen's sample_c2i_ddp.py: bf16, TF32 allowed, random labels; Janus-Pro: bf16."""
    sample = paper.jobs.sample_args("LlamaGen-XXL-384", "tensorar-default", 0, "final")
    timing = paper.jobs.timing_args("LlamaGen-XXL-384")
    for args in (sample, timing):
        assert (flag(args, "--dtype"), flag(args, "--tf32"), flag(args, "--labels")) == ("bf16", "on", "random")
        assert "--no-compile-step" in args
    janus = paper.jobs.sample_prompts_args("geneval", "Janus-Pro-7B", "base", 0)
    assert flag(janus, "--dtype") == "bf16" and "--tf32" not in janus
    planned = {p.job.name: p for p in paper.jobs.memory_plan}
    assert planned["sample_prompts Janus-Pro-7B base"].job.dtype_bytes == 2
    header = paper.manifests.table_manifest("table2")["provenance"]["sampling_protocol"]
    assert header["bf16, TF32, random labels, eager"][-1] == "LlamaGen-XXL-384"


def test_toy_jobs_keep_the_config_values(toy):
    """CPU jobs get no memory-plan strategy and sample fp32, balanced labels, eager, torch's TF32 default."""
    for backbone, variant in toy.experiment.tensorar_runs():
        assert strategy_of(toy.jobs.train_args(backbone, f"tensorar-{variant}", 0)) == ("ddp", False, "0")
    assert not toy.cluster.uses_gpus()
    backbone = toy.experiment.run_backbones()[0]
    for args in (toy.jobs.sample_args(backbone, "base", 0, "final"), toy.jobs.timing_args(backbone)):
        assert (flag(args, "--dtype"), flag(args, "--labels")) == ("fp32", "balanced")
        assert "--no-compile-step" in args and "--tf32" not in args
    assert "memory_plan" not in vars(toy.jobs)  # never computed for the toy
