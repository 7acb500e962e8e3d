"""The Snakemake workflow: config schema, job graphs (dry runs), lint, and real runs of a reduced toy
Table 2 locally and through a real single-node Slurm cluster (tests/slurm/start-slurm.sh)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
TOY = REPO / "config" / "config.yaml"
PAPER = REPO / "config" / "paper.yaml"
TEST_CONFIG = REPO / "tests" / "workflow" / "config.yaml"
SLURM_DIR = REPO / "tests" / "slurm"
IN_CI = os.environ.get("CI", "").lower() == "true"


def snakemake(*args: str, cwd: Path = REPO, timeout: int = 300, check: bool = True) -> subprocess.CompletedProcess:
    # `timeout -k`: a hung Snakemake (e.g. a status command that never answers) is killed, not waited on.
    cmd = ["timeout", "-k", "10", str(timeout), sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        pytest.fail(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def job_counts(output: str) -> dict[str, int]:
    """Rule -> job count from the "Job stats" table of a dry run."""
    table = output.split("Job stats:")[1].split("Reasons:")[0] if "Reasons:" in output else output.split("Job stats:")[1]
    counts = {}
    for line in table.splitlines():
        match = re.fullmatch(r"\s*([A-Za-z_]\w*)\s+(\d+)\s*", line)
        if match and match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts


def dry_run(*args: str, cwd: Path = REPO) -> dict[str, int]:
    proc = snakemake(*args, "-n", "--quiet", "rules", cwd=cwd)  # last: --quiet and --config take lists
    return job_counts(proc.stdout + proc.stderr)


PAPER_ARGS = ("--configfile", str(PAPER), "--replace-workflow-config")


# --------------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------------
def validate(config: dict) -> None:
    from snakemake.utils import validate as smk_validate

    smk_validate(config, str(SCHEMA))


@pytest.mark.parametrize("path", [TOY, PAPER], ids=["toy", "paper"])
def test_shipped_configs_are_valid(path):
    validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("where, key", [((), "seedz"), (("finetuning",), "step"), (("variants", "k8"), "schedul"),
                                        (("backbones", "GPT-toy-S", "sampling"), "cfg")])
def test_schema_rejects_misspelt_key_by_name(where, key):
    config = yaml.safe_load(TOY.read_text())
    node = config
    for part in where:
        node = node[part]
    node[key] = 1
    with pytest.raises(Exception, match=re.escape(repr(key))):
        validate(config)


def test_workflow_reports_misspelt_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("finetuning: {stepz: 3}\n")
    proc = snakemake("-n", "--configfile", str(TOY), str(bad), cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "stepz" in proc.stdout + proc.stderr


# --------------------------------------------------------------------------------------------------
# Job graphs (dry runs; no data, checkpoints or weights exist)
# --------------------------------------------------------------------------------------------------
def test_paper_table2_dry_run_with_slurm_profile():
    """The literal user command, as a dry run: 7 backbones (Open-MAGVIT2-B/L, LlamaGen-B/L/XL/XXL/3B) x
    (base sample, TensorAR, fine-tune control); codes per tokenizer and resolution (VQ 256, VQ 384, LFQ 256)."""
    start = time.perf_counter()
    counts = dry_run("--profile", "slurm", "results/table2.md")
    elapsed = time.perf_counter() - start
    assert counts == {"extract_codes": 3, "train": 14, "sample": 21, "evaluate": 21, "table": 1}
    assert elapsed < 60, f"paper dry run took {elapsed:.1f} s"


def test_paper_full_dry_run_lists_every_job():
    counts = dry_run(*PAPER_ARGS)
    # TensorAR runs: 7 Table 2 backbones + 7 extra ablation variants on LlamaGen-B (linear, sine, sqrt,
    # k2, k8, depth2, depth4) + 2 text-to-image backbones; one fine-tune control per backbone. Official
    # base models: no base training, no tokenizer training.
    assert counts["train"] == 7 + 7 + 2 + (7 + 2)
    assert "train_tokenizer" not in counts and "make_digits" not in counts and "make_captions" not in counts
    assert counts["drafts"] == 7  # a refinement strip per Table 2 backbone
    # samples: 21 (Table 2) + 7 ablations + 7 draft-noise rows + 4 steps x 2 curves (Fig. 5)
    assert counts["sample"] == counts["evaluate"] == 21 + 7 + 7 + 8
    # Tables 3-4: 2 backbones x (base, control, TensorAR) x (GenEval, DPG-Bench); the official detector
    # and VQA model once per image set; captions encoded per text encoder for training and for prompts.
    assert counts["sample_prompts"] == counts["score_benchmark"] == 2 * 3 * 2
    assert counts["geneval_detect"] == counts["dpg_vqa"] == 2 * 3
    assert counts["encode_captions"] == 2 * 2
    assert counts["table"] == 5 and counts["figures"] == 1 and counts["diagnostics"] == 1
    # Timed alone, one job per Table 2 backbone: its base, control and TensorAR interleaved (LlamaGen-B's
    # also holds the two deeper Table 6b variants).
    assert counts["time_sampling"] == 7 and counts["claims"] == 1


# Toy dry runs use a fresh working directory: the repository's own results/ may hold a real run.
def test_toy_default_dry_run_runs_every_table(tmp_path):
    counts = dry_run("--configfile", str(TOY), cwd=tmp_path)
    # Four backbones from scratch (GPT-toy-S, GPT-toy-M, Open-MAGVIT2-toy, LlamaGen-t2i-toy), 12 TensorAR
    # runs (10 on the class-conditional LlamaGen toys, the literal loss weights among them), a fine-tune
    # control per backbone; three tokenizers; ours: self-drafting (3x fine-tuning is in config/toy-seeds.yaml).
    assert counts["train"] == 4 + 12 + 4 + 1
    assert counts["train_tokenizer"] == 3 and counts["make_captions"] == 1
    # the toy benchmarks are scored by our toy detector: no official detector or VQA jobs
    assert counts["sample_prompts"] == counts["score_benchmark"] == 3 * 2
    assert "geneval_detect" not in counts and "dpg_vqa" not in counts
    assert counts["table"] == 5 and counts["figures"] == 1 and counts["diagnostics"] == 1
    assert counts["time_sampling"] == 3 and counts["claims"] == 1  # one interleaved job per Table 2 backbone


def test_single_ablation_row_runs_only_its_branch(tmp_path):
    """Only the k=8 row of Table 6a: its TensorAR run, the base it starts from, nothing else trained."""
    counts = dry_run("results/toy/metrics/GPT-toy-S/tensorar-k8/seed0/final.json", "--configfile", str(TOY),
                     cwd=tmp_path)
    assert counts["train"] == 2 and counts["sample"] == 1  # the base, then the k=8 run


def test_seeds_multiply_runs(tmp_path):
    # config/toy-seeds.yaml, the documented three-seed toy (an override file: --config would parse the list as strings)
    counts = dry_run("--configfile", str(TOY), str(TOY.with_name("toy-seeds.yaml")), cwd=tmp_path)
    assert counts["train"] == 3 * (21 + 2)  # + TensorAR and control fine-tuned 3x as long
    assert counts["time_sampling"] == 3  # the first seed's models only


def test_lint_has_only_the_conda_warning():
    """`--lint` asks for a conda env per rule; every rule but the official benchmark models' (which have
    their own `conda:` environments) runs `python -m tensorar.*` from the one environment of the package
    (environment.yml), so that suggestion is the only one left."""
    proc = snakemake("--lint", check=False)
    lints = [line.strip() for line in (proc.stdout + proc.stderr).splitlines() if line.strip().startswith("* ")]
    assert lints, "expected lint output"
    assert set(lints) == {"* Specify a conda environment or container for each rule.:"}, lints


# --------------------------------------------------------------------------------------------------
# Real runs of a reduced toy Table 2
# --------------------------------------------------------------------------------------------------
REDUCED = ("--configfile", str(TOY), str(TEST_CONFIG))  # takes a list: targets go first


def check_table2(workdir: Path) -> None:
    table = (workdir / "results" / "table2.md").read_text()
    assert "config hash" in table and "toy-FID" in table
    rows = [line for line in table.splitlines() if line.startswith("|")]
    for label in ("Open-MAGVIT2-toy", "GPT-toy-S"):  # base, control, TensorAR
        assert sum(label in row for row in rows) == 3, label
    assert "with TensorAR (k=4, d=1, exponential)" in table and "fine-tune control" in table
    assert (workdir / "results" / "table2.csv").exists()


@pytest.mark.slow
def test_reduced_toy_tables_2_to_4_run_locally(tmp_path):
    snakemake("results/table2.md", "results/table3.md", "results/table4.md", "--cores", "2", *REDUCED, cwd=tmp_path,
              timeout=1500)
    check_table2(tmp_path)
    for table, column in (("table3", "Color Attr."), ("table4", "Relation")):
        text = (tmp_path / "results" / f"{table}.md").read_text()
        rows = [line for line in text.splitlines() if line.startswith("|")]
        assert "toy benchmark, ours" in text and column in text
        assert sum("LlamaGen-t2i-toy" in row for row in rows) == 3  # base, control, TensorAR
    # Re-running is a no-op; changing one variant's settings re-runs its branch only.
    assert "Nothing to be done" in snakemake("results/table2.md", "results/table4.md", "-n", *REDUCED,
                                             cwd=tmp_path).stdout
    (tmp_path / "k2.yaml").write_text("variants: {default: {k: 2, depth: 1, schedule: exponential}}\n")
    changed = dry_run("results/table2.md", *REDUCED, str(tmp_path / "k2.yaml"), cwd=tmp_path)
    assert changed == {"train": 2, "sample": 2, "evaluate": 2, "table": 1}  # that variant's run per backbone
    # Snakemake's HTML report holds the table and the sample grids, grouped by table.
    snakemake("results/table2.md", "--report", "results/report.html", *REDUCED, cwd=tmp_path)
    report = (tmp_path / "results" / "report.html").read_text()
    assert "table2" in report and "Samples" in report and "OMV-toy" in report


def slurm_available() -> bool:
    return shutil.which("sbatch") is not None and subprocess.run(
        ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout.strip() in {"idle", "mixed", "allocated"}


@pytest.fixture(scope="session")
def slurm_cluster():
    """The lab cluster: started by .ci/run; started here when missing and we are root (CI must run it)."""
    if not slurm_available() and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["bash", str(SLURM_DIR / "start-slurm.sh")], capture_output=True, timeout=600)
    if not slurm_available():
        if IN_CI:
            pytest.fail("CI=true but no Slurm cluster is up (tests/slurm/start-slurm.sh failed?)")
        pytest.skip("no Slurm cluster here (sinfo shows no idle node) and not in CI; "
                    "start one with `sudo tests/slurm/start-slurm.sh`")


@pytest.mark.slow
def test_reduced_toy_table2_runs_on_slurm(tmp_path, slurm_cluster):
    proc = snakemake("results/table2.md", "--profile", str(SLURM_DIR / "profile"), *REDUCED,
                     cwd=tmp_path, timeout=1500)
    assert "slurm" in (proc.stdout + proc.stderr).lower()
    check_table2(tmp_path)


@pytest.mark.slow
def test_config_paths_with_spaces_and_shell_metacharacters_are_only_paths(tmp_path):
    """A released tokenizer at a path holding a space, `$(...)` and `;`: the job reads that file and the
    shell runs nothing from the path (every config value reaches a command shell-quoted)."""
    import torch

    from tensorar.models.vq import VQ_MODELS, VQModel, vq_checkpoint

    weird = tmp_path / "pretrained dir $(touch PWNED); echo"
    weird.mkdir()
    tokenizer = weird / "vq $(touch PWNED2).pt"
    torch.manual_seed(0)
    torch.save(vq_checkpoint(VQModel(VQ_MODELS["VQ-toy"])), tokenizer)
    override = tmp_path / "weird.yaml"
    override.write_text(yaml.safe_dump({"tokenizers": {"vq": {"preset": "VQ-toy", "checkpoint": str(tokenizer)}}}))
    target = "results/test/codes/vq/val-16/manifest.json"
    snakemake(target, "--cores", "1", *REDUCED, str(override), cwd=tmp_path, timeout=600)
    assert (tmp_path / target).is_file()
    assert not list(tmp_path.rglob("PWNED*")) and not list(REPO.glob("PWNED*"))
    manifest = yaml.safe_load((tmp_path / target).read_text())
    assert manifest["tokenizer_path"] == str(tokenizer) and manifest["complete"]
