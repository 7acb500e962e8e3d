"""config/README.md documents every key of workflow/schemas/config.schema.yaml (the source of truth).

Rule: the `## Keys` section of the README has one `### ` subsection per top-level key whose heading names
it in backticks (`### \\`dataset\\``, `### \\`backbones.<key>\\``); scalar top-level keys live in
`### Top level`. For every property path of the schema (descending into `$ref` definitions, and into
`additionalProperties` objects as `<key>`), the path's last name must appear in an inline code span of the
section of its top-level key, either alone (`` `steps` ``) or as a component of a dotted path
(`` `claims.ours.longer_finetuning` ``). A property of a shared `$defs` object (`resource_spec`,
`training`) may be documented once: in the section of any top-level key that reaches it.

The reverse direction catches stale names: every dotted code span in the README that starts with a
top-level key (`tokenizers.vq16.checkpoint`, `resources.time_sampling`) must be a path of the schema.
"""
from __future__ import annotations

import re
from collections import defaultdict

import pytest
import yaml

PLACEHOLDER = "<key>"
FILE_SUFFIXES = {"md", "json", "png", "csv", "yaml", "pt", "pth", "npz", "ckpt", "jsonl", "tar"}


def _schema(repo_root) -> dict:
    return yaml.safe_load((repo_root / "workflow" / "schemas" / "config.schema.yaml").read_text())


def _readme(repo_root) -> str:
    return (repo_root / "config" / "README.md").read_text()


def schema_paths(schema: dict) -> list[tuple[tuple[str, ...], tuple]]:
    """Every property path, with the place it is declared: (`$defs` name, path inside that definition) for
    a property of a shared definition, (None, path) for one declared inline in the root."""
    defs = schema.get("$defs", {})
    found: dict[tuple[str, ...], tuple] = {}

    def walk(node: dict, path: tuple[str, ...], owner: str | None, rel: tuple[str, ...]) -> None:
        seen: set[str] = set()
        while isinstance(node, dict) and "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            assert node["$ref"] == f"#/$defs/{name}" and name in defs, node["$ref"]
            assert name not in seen, f"$ref cycle at {name}"
            seen.add(name)
            node, owner, rel = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}, name, ()
        if not isinstance(node, dict):
            return
        for name, sub in (node.get("properties") or {}).items():
            found.setdefault(path + (name,), (owner, rel + (name,)))
            walk(sub, path + (name,), owner, rel + (name,))
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            walk(extra, path + (PLACEHOLDER,), owner, rel + (PLACEHOLDER,))
        if isinstance(node.get("items"), dict):
            walk(node["items"], path, owner, rel)
        for key in ("allOf", "anyOf", "oneOf"):
            for sub in node.get(key) or []:
                walk(sub, path, owner, rel)
        for key in ("then", "else"):  # not "if": a condition declares no key
            if isinstance(node.get(key), dict):
                walk(node[key], path, owner, rel)

    walk(schema, (), None, ())
    return list(found.items())


def keys_sections(readme: str) -> dict[str, str]:
    """Top-level key -> text of its `### ` subsection of `## Keys` ("" -> the `### Top level` one)."""
    match = re.search(r"^## Keys\s*$(.*?)(?=^## |\Z)", readme, re.MULTILINE | re.DOTALL)
    assert match, "config/README.md has no '## Keys' section"
    sections: dict[str, str] = defaultdict(str)
    for block in re.split(r"^(?=### )", match.group(1), flags=re.MULTILINE):
        if not block.startswith("### "):
            continue
        heading = block.splitlines()[0]
        code = re.search(r"`([^`]+)`", heading)
        sections[code.group(1).split(".")[0] if code else ""] += block
    return dict(sections)


def code_names(text: str) -> set[str]:
    """Names in inline code spans: each span, and each component of a dotted span."""
    names: set[str] = set()
    for span in re.findall(r"`([^`\n]+)`", text):
        span = span.strip()
        names.add(span)
        names.update(part for part in span.split(".") if part)
    return names


def test_schema_walk_finds_nested_and_shared_keys(repo_root):
    paths = {".".join(p) for p, _ in schema_paths(_schema(repo_root))}
    assert len(paths) > 150
    for expected in ("evaluation.bootstrap_replicates", "claims.ours.longer_finetuning",
                     "backbones.<key>.sampling.greedy", "backbones.<key>.resources.sample_prompts.threads",
                     "resources.time_sampling.slurm_extra", "tokenizers.<key>.training.lr",
                     "tables.table3.variant", "benchmarks.geneval.detector_config", "variants.<key>.draft_source"):
        assert expected in paths


def test_every_schema_key_is_documented(repo_root):
    schema, readme = _schema(repo_root), _readme(repo_root)
    sections = keys_sections(readme)
    names = {key: code_names(text) for key, text in sections.items()}
    top_level = set(schema["properties"])
    headed = set(sections) - {""}
    assert headed <= top_level, f"### headings for keys the schema does not have: {sorted(headed - top_level)}"

    def section_of(top: str) -> set[str]:
        return names.get(top if top in headed else "", set())

    # A property of a shared definition is documented if it is in the section of any key that reaches it.
    groups: dict[tuple, list[tuple[str, ...]]] = defaultdict(list)
    for path, declared in schema_paths(schema):
        groups[declared].append(path)
    missing = [" | ".join(".".join(p) for p in paths) for paths in groups.values()
               if not any(path[-1] in section_of(path[0]) for path in paths)]
    assert not missing, "undocumented in config/README.md (## Keys):\n  " + "\n  ".join(sorted(missing))


def _resolves(schema: dict, parts: list[str]) -> bool:
    defs = schema["$defs"]
    node = schema
    for part in parts:
        while "$ref" in node:
            node = {**defs[node["$ref"].rsplit("/", 1)[-1]], **{k: v for k, v in node.items() if k != "$ref"}}
        props = node.get("properties") or {}
        extra = node.get("additionalProperties")
        if part in props:
            node = props[part]
        elif re.fullmatch(r"<[^>]+>|\*", part) and (isinstance(extra, dict) or props):
            node = extra if isinstance(extra, dict) else next(iter(props.values()))
        elif isinstance(extra, dict) and not props:
            node = extra  # a concrete key of a by-key mapping, e.g. tokenizers.vq16
        else:
            return False
    return True


def test_dotted_key_paths_in_readme_exist(repo_root):
    schema, readme = _schema(repo_root), _readme(repo_root)
    top_level = set(schema["properties"])
    stale = []
    for span in re.findall(r"`([^`\n]+)`", readme):
        parts = span.split(".")
        if len(parts) < 2 or parts[0] not in top_level or parts[-1] in FILE_SUFFIXES:
            continue
        if not all(re.fullmatch(r"[A-Za-z0-9_-]+|<[^>]+>|\*", p) for p in parts):
            continue
        if not _resolves(schema, parts):
            stale.append(span)
    assert not stale, f"config/README.md names config keys the schema does not have: {stale}"


def test_released_inputs_table_names_schema_keys(repo_root):
    """The first column of the released-inputs table holds nothing but config keys (e.g. no `tokenizer.`
    left over from before `tokenizers.<key>`)."""
    schema, readme = _schema(repo_root), _readme(repo_root)
    table = re.search(r"^\| input \(paper\.yaml key\).*\n\|[-| ]+\n((?:\|.*\n)+)", readme, re.MULTILINE)
    assert table, "config/README.md has no released-inputs table"
    inputs = [span for row in table.group(1).splitlines() for span in re.findall(r"`([^`]+)`", row.split("|")[1])]
    assert len(inputs) >= 10
    stale = [span for span in inputs if not _resolves(schema, span.split("."))]
    assert not stale, f"released-inputs table names config keys the schema does not have: {stale}"


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml", "toy-seeds.yaml"])
def test_files_table_lists_every_shipped_config(repo_root, name):
    assert (repo_root / "config" / name).is_file()
    files_table = _readme(repo_root).split("## ", 1)[0]
    assert f"`config/{name}`" in files_table
