"""The experiment plan: from a validated workflow config to plain data, one question per module.

    plan = Plan(config)                          # config/config.yaml or config/paper.yaml, schema-validated
    plan.experiment.backbones["GPT-toy-S"]       # experiment.py: the typed experiment and its runs
    plan.layout.sample("GPT-toy-S", "base", 0)   # layout.py: where every file lives
    plan.jobs.sample_args("GPT-toy-S", "tensorar-default", 0, "final")   # jobs.py: inputs + argument lists
    plan.manifests.table_manifest("table2")      # manifests.py: tables, diagnostics, figures
    plan.claims_manifest()                       # claims.py: the paper's claims and their tests
    plan.cluster.job_resources("train", "GPT-toy-S")   # cluster.py: what a job asks the scheduler for

The config is parsed once (`parse_experiment`, naming a bad key) and its cross references checked
(`checks.check_references`); nothing after that reads the config mapping. The Snakemake rules
(workflow/rules/*.smk) only wire the answers together: paths, inputs, resources.
"""
from __future__ import annotations

from tensorar.plan.checks import check_references
from tensorar.plan.claims import claims_manifest
from tensorar.plan.cluster import Cluster
from tensorar.plan.experiment import Experiment, parse_experiment
from tensorar.plan.jobs import Jobs, parse_method
from tensorar.plan.layout import Layout
from tensorar.plan.manifests import Manifests, manifest_inputs

__all__ = ["Experiment", "Plan", "manifest_inputs", "parse_experiment", "parse_method"]


class Plan:
    """One experiment's plan: the typed experiment and the layout, jobs, manifests and cluster requests
    built on it."""

    def __init__(self, config: dict):
        self.experiment = parse_experiment(config)
        check_references(self.experiment)
        self.layout = Layout(self.experiment)
        self.cluster = Cluster(self.experiment)
        self.jobs = Jobs(self.experiment, self.layout, self.cluster)
        self.manifests = Manifests(self.experiment, self.layout)

    def claims_manifest(self) -> dict:
        return claims_manifest(self.manifests)
