"""The README's commands and Python example are what users run first: keep them true."""
from __future__ import annotations

import re


def _readme(repo_root) -> str:
    return (repo_root / "README.md").read_text()


def test_readme_starts_with_the_two_commands(repo_root):
    first_block = re.search(r"```bash\n(.*?)```", _readme(repo_root), re.S).group(1).strip().splitlines()
    assert first_block == [
        'pip install torch==2.14.1 torchvision==0.29.1 -e . && snakemake --cores all',
        'pip install torch==2.14.1 torchvision==0.29.1 -e ".[test]" && pytest',
    ]
    ci = (repo_root / ".ci" / "run").read_text()
    assert first_block[1] in ci  # CI runs the README's test command verbatim


def test_python_api_example_runs(repo_root, tmp_path, monkeypatch):
    section = _readme(repo_root).split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)  # the example writes a checkpoint file
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    tokens, drafts = namespace["tokens"], namespace["drafts"]
    assert tokens.shape == (2, 64) and drafts.shape == (2, 64, 4)
    assert namespace["codes"].shape == (2, 8, 8)
    assert torch_equal(drafts[:, :, 0], tokens)  # the committed token is slot 0 of each step


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)
