"""What each job asks the scheduler for: its stage's resources (`resources.default` < `resources.<stage>` <
`backbones.<b>.resources.<stage>`) and the cluster settings (`cluster`): the signal that lets a training
job save before its time limit, where jobs without a GPU run, and the GPU the GenEval detector needs.
Local runs read only `threads`; on Slurm the executor plugin turns the rest into sbatch flags."""
from __future__ import annotations

from tensorar.plan.experiment import Experiment

# The resource stage of every rule (several rules share a stage's resources).
RULE_STAGES = {
    "make_digits": "make_digits", "make_reference": "make_reference", "make_captions": "make_captions",
    "train_tokenizer": "train_tokenizer", "extract_codes": "extract_codes", "encode_captions": "encode_captions",
    "train": "train", "train_classifier": "train_classifier",
    "sample": "sample", "drafts": "drafts", "time_sampling": "time_sampling", "sample_prompts": "sample_prompts",
    "evaluate": "evaluate", "diagnose": "diagnose",
    "geneval_detect": "benchmark_model", "dpg_vqa": "benchmark_model", "score_benchmark": "score_benchmark",
    "table": "tables", "diagnostics": "tables", "figures": "tables", "claims": "tables",
}


class Cluster:
    def __init__(self, experiment: Experiment):
        self.experiment = experiment
        self.settings = experiment.cluster

    def stage_resources(self, stage: str, backbone: str | None = None) -> dict:
        resources = self.experiment.resources
        spec = dict(resources.default)
        spec.update(resources.stages.get(stage) or {})
        if backbone is not None:
            spec.update(self.experiment.backbones[backbone].resources.get(stage) or {})
        return spec

    def job_resources(self, rule: str, backbone: str | None = None) -> dict:
        """A rule's resources (threads included) for one job; `backbone` applies its overrides."""
        spec = self.stage_resources(RULE_STAGES[rule], backbone)
        spec.pop("gpu_mem_mb", None)  # read by the memory plan, not a scheduler request
        if rule == "train" and self.settings.train_signal_lead:
            # Slurm sends SIGTERM this long before the time limit; the trainer saves and exits, and the
            # resubmitted job (profile `retries`) resumes from that checkpoint.
            signal = f"--signal=TERM@{self.settings.train_signal_lead}"
            spec["slurm_extra"] = f"{spec['slurm_extra']} {signal}" if spec.get("slurm_extra") else signal
        if rule == "geneval_detect" and self.settings.geneval_constraint:
            spec["constraint"] = self.settings.geneval_constraint
        if self.cpu_only(rule) and self.settings.cpu_partition and "slurm_partition" not in spec:
            spec["slurm_partition"] = self.settings.cpu_partition
        return spec

    def cpu_only(self, rule: str) -> bool:
        """A rule whose stage asks for no GPU (tables, scores, claims, references, the toy's stages)."""
        return not self.stage_resources(RULE_STAGES[rule]).get("gpu")

    def uses_gpus(self) -> bool:
        """Any stage asks for a GPU (paper scale; the toy runs on CPUs)."""
        return not all(self.cpu_only(rule) for rule in RULE_STAGES)

    def local_rules(self) -> list[str]:
        """Rules the Snakemake process runs itself instead of submitting them (`cluster.cpu_jobs: local`)."""
        return [rule for rule in RULE_STAGES if self.settings.cpu_jobs == "local" and self.cpu_only(rule)]
