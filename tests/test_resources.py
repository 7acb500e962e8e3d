"""The memory plan (tensorar.resources, docs/resources.md): parameter counts from the real models, the
analytic peak against torch's MemTracker on the real training step (fake and real tensors, and a real
two-process FSDP run), the strategy choice and its refusals, and the stage's table in the docs."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tensorar.resources.architecture import ModelSpec, architecture
from tensorar.resources.memory import smallest_int_bytes, training_peak
from tensorar.resources.strategy import DoesNotFit, choose_training
from tensorar.resources.tracking import fsdp_tracked_peak, tracked_training_peak

GiB = 2**30
TOLERANCE = 0.15  # the bound: analytic within ±15 % of the tracker
TOY = ModelSpec("llamagen", "GPT-toy-M", 64, 256, 10, k=4)
XXL = ModelSpec("llamagen", "GPT-XXL", 576, 16384, 1000, k=4)


def unsharded_prediction(spec: ModelSpec, batch: int, checkpointing: bool) -> int:
    """One rank without DDP's buckets: what the single-process tracker holds."""
    peak = training_peak(architecture(spec), batch, 1, "ddp", checkpointing, device="cpu")
    return peak.total - peak.other


def test_parameter_counts_are_the_built_models():
    omv = architecture(ModelSpec("open_magvit2", "AR-B", 256, 2**18, 1000))
    assert omv.parameters == omv.trainable == 343_570_432  # the released AR-B (open_magvit2.OMV_MODELS)
    t2i = architecture(ModelSpec("llamagen_t2i", "GPT-XL", 256, 16384))
    assert t2i.parameters == 777_678_080  # t2i_XL_stage1_256.pt
    janus = architecture(ModelSpec("janus", "Janus-Pro-7B", 576, 16384, prompt_length=256))
    assert (janus.parameters, janus.trainable) == (7_407_773_323, 6_591_791_104)  # frozen understanding tower
    with_plugin = architecture(ModelSpec("llamagen", "GPT-B", 256, 16384, 1000, k=4))
    assert with_plugin.parameters > architecture(ModelSpec("llamagen", "GPT-B", 256, 16384, 1000)).parameters


@pytest.mark.parametrize("spec, batch, checkpointing", [
    (ModelSpec("llamagen", "GPT-B", 256, 16384, 1000, k=4), 32, False),  # LlamaGen-B-256's TensorAR row
    (ModelSpec("llamagen", "GPT-B", 256, 16384, 1000, k=4), 32, True),
    (ModelSpec("open_magvit2", "AR-toy", 64, 256, 10, k=4), 32, False),
    (ModelSpec("llamagen_t2i", "GPT-toy-t2i", 64, 256, k=4), 32, True),
], ids=["GPT-B-k4", "GPT-B-k4-AC", "AR-toy-k4", "t2i-toy-k4-AC"])
def test_analytic_peak_agrees_with_memtracker_on_fake_tensors(spec, batch, checkpointing):
    tracked = tracked_training_peak(spec, batch, checkpointing, fake=True)["Total"]
    assert unsharded_prediction(spec, batch, checkpointing) == pytest.approx(tracked, rel=TOLERANCE)


def test_real_cpu_step_measures_what_fake_tensors_and_the_analytic_model_say():
    real = tracked_training_peak(TOY, 32, fake=False)
    fake = tracked_training_peak(TOY, 32, fake=True)
    assert real["Total"] == pytest.approx(fake["Total"], rel=0.01)
    # AdamW: two fp32 moments per (trainable) weight, and a step counter per tensor
    assert real["Optstate"] == pytest.approx(2 * real["Parameter"], rel=0.01)
    assert unsharded_prediction(TOY, 32, False) == pytest.approx(real["Total"], rel=TOLERANCE)


def test_two_process_fsdp_run_on_gloo_agrees_with_the_sharded_prediction():
    spec = ModelSpec("llamagen", "GPT-toy-M", 64, 256, 10, k=0)
    measured = fsdp_tracked_peak(spec, 32, checkpointing=False, world=2)
    predicted = training_peak(architecture(spec), 32, 2, "fsdp", False, device="cpu")
    assert predicted.total == pytest.approx(measured["Total"], rel=TOLERANCE)
    unsharded = training_peak(architecture(spec), 32, 1, "ddp", False, device="cpu")
    assert predicted.parameters == unsharded.parameters // 2


def test_strategy_escalates_from_ddp_to_fsdp_to_micro_batches():
    arch = architecture(XXL)
    assert training_peak(arch, 32, 8, "ddp", False).total > training_peak(arch, 32, 8, "fsdp", True).total
    roomy = choose_training("train XXL", arch, 256, 8, 80 * GiB)
    assert roomy.strategy == "fsdp"  # a full XXL replica with 32 x 577 positions does not fit 80 GB
    tight = choose_training("train XXL", arch, 256, 8, 16 * GiB)
    assert (tight.strategy, tight.activation_checkpointing) == ("fsdp", True)
    assert 0 < tight.micro_batch_size < 32 and 32 % tight.micro_batch_size == 0
    assert tight.peak.total <= 16 * GiB
    small = architecture(ModelSpec("llamagen", "GPT-B", 256, 16384, 1000))
    assert choose_training("train B", small, 256, 8, 80 * GiB).options() == {
        "strategy": "ddp", "activation_checkpointing": False, "micro_batch_size": 0}


def test_a_job_nothing_fits_is_refused_with_its_numbers():
    with pytest.raises(DoesNotFit, match=r"train Janus-Pro-7B tensorar-default: no strategy fits 2\.\d GiB .*GiB"):
        choose_training("train Janus-Pro-7B tensorar-default",
                        architecture(ModelSpec("janus", "Janus-Pro-7B", 576, 16384, prompt_length=256, k=4)),
                        256, 8, 4 * GiB)


def test_codes_are_stored_in_the_smallest_integer_type():
    assert [smallest_int_bytes(v) for v in (256, 257, 16384, 2**18)] == [1, 2, 2, 4]


def test_docs_list_the_stage_output_for_every_paper_job(repo_root, tmp_path):
    """docs/resources.md holds exactly what `tensorar resources --configfile config/paper.yaml` prints."""
    doc = tmp_path / "resources.md"
    shutil.copy(repo_root / "docs" / "resources.md", doc)
    done = subprocess.run([sys.executable, "-m", "tensorar.cli", "resources", "--configfile", "config/paper.yaml",
                           "--update-doc", str(doc)], cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, 1), done.stderr
    for line in done.stderr.splitlines():
        if line.startswith("error: "):
            assert " GiB" in line and line.split()[1] in ("train", "sample", "time_sampling", "sample_prompts")
    assert "| train LlamaGen-XXL-384 tensorar-default |" in done.stdout
    stale = "docs/resources.md is stale: tensorar resources --configfile config/paper.yaml --update-doc docs/resources.md"
    assert doc.read_text() == (repo_root / "docs" / "resources.md").read_text(), stale


def test_the_toy_config_fits_its_resources(repo_root):
    done = subprocess.run([sys.executable, "-m", "tensorar.cli", "resources", "--configfile", "config/config.yaml"],
                          cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "| train GPT-toy-S tensorar-default |" in done.stdout and "refused" not in done.stdout
