"""pyproject.toml and environment.yml list the same dependencies with the same bounds."""
from __future__ import annotations

import re
import tomllib

import yaml


def _normalise(spec: str) -> tuple[str, str]:
    name, bounds = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", spec.strip()).groups()
    return name.lower().replace("_", "-"), bounds.replace(" ", "")


def test_environment_yml_matches_pyproject(repo_root):
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    pip_deps = {_normalise(s) for s in project["dependencies"] + project["optional-dependencies"]["test"]}
    env = yaml.safe_load((repo_root / "environment.yml").read_text())
    conda_deps: set[tuple[str, str]] = set()
    for entry in env["dependencies"]:
        if isinstance(entry, dict):
            conda_deps |= {_normalise(s) for s in entry["pip"] if not s.startswith("-")}
        elif not entry.startswith(("python", "pip")):
            conda_deps.add(_normalise(entry))
    assert conda_deps == pip_deps
