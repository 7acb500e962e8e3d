"""The package's shape (docs/architecture.md): no import circles, no import from a higher layer, every
stage reachable as `tensorar <stage>` and `python -m tensorar <stage>`, and no unsafe pickle loading."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "tensorar"

# Lower layers never import higher ones (docs/architecture.md draws the same picture).
LAYERS = {
    "errors": 0, "options": 0, "fileio": 0, "checkpoint": 0, "distributed": 0,
    "decoding": 1, "data": 1, "evaluation": 1, "reporting": 1,
    "models": 2, "toy": 2,
    "training": 3, "sampling": 3,
    "resources": 3.5,  # the memory plan: reads models and training, read by plan and stages
    "plan": 4,
    "stages": 5,
    "cli": 6, "__init__": 6, "__main__": 6,
}
# Inside the plan package, one question per module, each answered from the ones above it:
# inputs and run lengths -> the typed experiment -> its checks and its file layout -> jobs and manifests -> claims -> Plan.
PLAN_LAYERS = {"inputs": 0, "lengths": 0, "experiment": 1, "checks": 2, "layout": 2, "cluster": 2, "jobs": 3, "manifests": 3,
               "claims": 4, "plan": 5}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """tensorar modules a file imports, at module level or inside functions."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tensorar"):
            found.add(node.module)
            for alias in node.names:  # `from tensorar.models import llamagen` imports a module
                candidate = f"{node.module}.{alias.name}"
                if (PACKAGE.parent / Path(*candidate.split("."))).with_suffix(".py").exists():
                    found.add(candidate)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("tensorar")}
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else "__init__"]


def test_no_import_circles():
    edges = graph()
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in edges[node]:
            if state.get(nxt) == 1:
                pytest.fail(f"import circle: {' -> '.join(trail[trail.index(nxt):] + [nxt])}")
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for start in edges:
        if start not in state:
            visit(start, [start])


def test_no_circles_between_packages():
    """Packages of one layer may import each other one way only (data and evaluation: not at all; the toy
    reads both and neither reads the toy)."""
    edges: dict[str, set[str]] = {}
    for a, targets in graph().items():
        for b in targets:
            pa, pb = a.split(".")[:2], b.split(".")[:2]
            if len(pa) > 1 and len(pb) > 1 and pa[1] != pb[1]:
                edges.setdefault(pa[1], set()).add(pb[1])
    both_ways = sorted(f"{a} <-> {b}" for a, targets in edges.items() for b in targets
                       if a < b and a in edges.get(b, set()))
    assert not both_ways, both_ways
    assert "evaluation" not in edges.get("data", set()) and "data" not in edges.get("evaluation", set())


def test_no_import_from_a_higher_layer():
    upward = [f"{a} -> {b}" for a, targets in graph().items() for b in targets
              if a != "tensorar" and layer(b) > layer(a)]
    assert not upward, upward


def test_plan_modules_answer_one_question_each():
    edges = graph()
    plan_modules = [m for m in edges if m == "tensorar.plan" or m.startswith("tensorar.plan.")]
    assert {m.split(".")[-1] for m in plan_modules} == set(PLAN_LAYERS)
    for module in plan_modules:
        for target in edges[module]:
            if target.startswith("tensorar.plan."):
                assert PLAN_LAYERS[target.split(".")[-1]] < PLAN_LAYERS[module.split(".")[-1]], f"{module} -> {target}"
        path = PACKAGE / Path(*module.split(".")[1:])
        source = (path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).read_text()
        assert len(source.splitlines()) < 400, module


def test_every_stage_is_a_command():
    from tensorar.cli import COMMANDS

    stages = {p.stem for p in (PACKAGE / "stages").glob("*.py") if p.stem != "__init__"}
    assert set(COMMANDS) == stages
    for name in stages:
        assert "def main(" in (PACKAGE / "stages" / f"{name}.py").read_text(), name
    for command in (["-m", "tensorar", "sample", "--help"], ["-m", "tensorar.cli", "evaluate", "--help"]):
        done = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "usage:" in done.stdout, done.stderr


def test_torch_load_is_weights_only_everywhere_but_the_opt_in():
    """The only weights_only=False is checkpoint.read_checkpoint's explicit, logged opt-in."""
    offenders = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load" and \
                    getattr(node.func.value, "id", None) in ("torch", "pickle"):
                kw = {k.arg: k.value for k in node.keywords}
                safe = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                if not safe:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert len(offenders) == 1 and offenders[0].startswith("src/tensorar/checkpoint.py:"), offenders
    source = (PACKAGE / "checkpoint.py").read_text()
    assert "allow_unsafe_pickle" in source and "TENSORAR_ALLOW_UNSAFE_PICKLE" in source
    for smk in (ROOT / "workflow").rglob("*.smk"):
        assert "weights_only" not in smk.read_text(), smk
