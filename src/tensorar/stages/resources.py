"""The memory plan of every planned training and sampling job: predicted GPU and host memory, the
training strategy that fits, and what each job's resources ask for (docs/resources.md).

    tensorar resources --configfile config/paper.yaml
    tensorar resources --configfile config/paper.yaml --update-doc docs/resources.md

Exits with status 1, naming the job and its numbers, when a job fits nothing its resources give it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from tensorar.errors import run_stage
from tensorar.fileio import atomic_write_text
from tensorar.plan import Plan
from tensorar.resources.table import render, replace_block

SCHEMA = "workflow/schemas/config.schema.yaml"


def load_config(path: Path, schema: Path) -> dict:
    """The workflow config as the Snakefile loads it: schema-validated, defaults filled."""
    from snakemake.utils import validate

    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict):
        raise ValueError(f"{path}: not a YAML mapping")
    validate(config, str(schema))
    return config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tensorar resources", description=__doc__.split("\n")[0])
    parser.add_argument("--configfile", type=Path, required=True, help="the workflow config (config/paper.yaml)")
    parser.add_argument("--schema", type=Path, default=Path(SCHEMA), help="its JSON schema")
    parser.add_argument("--update-doc", type=Path, help="rewrite the table block of this Markdown file")
    args = parser.parse_args(argv)
    for path in (args.configfile, args.schema):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
    planned = Plan(load_config(args.configfile, args.schema)).jobs.memory_plan
    table = render(planned)
    print(table, end="")
    if args.update_doc:
        atomic_write_text(args.update_doc, replace_block(args.update_doc.read_text(), table, str(args.update_doc)))
    refused = [p.refusal for p in planned if p.refusal]
    if refused:
        sys.exit("\n".join(f"error: {r}" for r in refused))


if __name__ == "__main__":
    run_stage(main)
