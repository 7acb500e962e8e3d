"""docs/entry_points.md documents every stage's command line (the contract with the workflow).

For every command of `tensorar.cli.COMMANDS` the doc has exactly one table row, the line starting with
"| `<cmd>" (followed by a space or the closing backtick), and that row names
- every long option of the stage's argparse parser (except `--help`),
- every choice of a positional argument (`tables ... claims`, `score_benchmark geneval|dpg`) in its
  first cell, the command line itself,
and no long option the parser does not have (a renamed or removed flag). The parser is built without
running the stage: `build_parser()` when the module has one, else the parser `main(["--help"])` builds,
recorded as it parses (the help exits before any work), with the usage line of its help text as the
fallback. A new command or flag added without documenting it therefore fails here.
"""
from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path

import pytest

from tensorar.cli import COMMANDS

DOC = Path(__file__).resolve().parents[1] / "docs" / "entry_points.md"
# A long option as a whole word: `--lr` must not be found inside `--lr-base`, nor `--seed` in `--bootstrap-seed`.
LONG_OPTION = re.compile(r"(?<![\w-])--[a-z0-9][a-z0-9-]*")


def doc_rows() -> dict[str, list[str]]:
    """command -> the doc's table rows for it (lines starting with "| `<cmd> " or "| `<cmd>`")."""
    rows: dict[str, list[str]] = {}
    for line in DOC.read_text().splitlines():
        match = re.match(r"\| `([A-Za-z0-9_]+)[ `]", line)
        if match:
            rows.setdefault(match.group(1), []).append(line)
    return rows


def mentions(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


def command_cell(row: str) -> str:
    """The first cell of a table row (cells split at pipes not escaped as `\\|`)."""
    return re.split(r"(?<!\\)\|", row)[1]


def usage_block(help_text: str) -> str:
    """The usage paragraph of an argparse help text ("usage: ..." up to the first blank line)."""
    start = help_text.index("usage:")
    end = help_text.find("\n\n", start)
    return help_text[start:] if end < 0 else help_text[start:end]


def stage_parser(cmd: str, monkeypatch, capsys) -> tuple[argparse.ArgumentParser | None, str]:
    """(the stage's parser, or None if it could not be captured; its help text)."""
    module = importlib.import_module(f"tensorar.stages.{cmd}")
    if hasattr(module, "build_parser"):
        parser = module.build_parser()
        return parser, parser.format_help()
    captured: list[argparse.ArgumentParser] = []
    original = argparse.ArgumentParser.parse_known_args

    def recording(self, *args, **kwargs):
        if not captured:  # the outermost parse is the stage's own parser
            captured.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", recording)
    with pytest.raises(SystemExit) as exited:
        module.main(["--help"])
    assert exited.value.code in (0, None), f"{cmd} --help exited with {exited.value.code}"
    help_text = capsys.readouterr().out
    assert "usage:" in help_text, f"{cmd} --help printed no usage"
    return (captured[0] if captured else None), help_text


def long_options(parser: argparse.ArgumentParser | None, help_text: str) -> set[str]:
    if parser is None:  # fall back on the help text: its usage paragraph lists every visible option
        found = set(LONG_OPTION.findall(usage_block(help_text)))
    else:
        found = {s for action in parser._actions for s in action.option_strings if s.startswith("--")}
    return found - {"--help"}


def positional_choices(parser: argparse.ArgumentParser | None) -> set[str]:
    if parser is None:
        return set()
    return {str(c) for action in parser._actions if not action.option_strings and action.choices
            for c in action.choices}


def test_one_row_per_command_and_no_stale_rows():
    rows = doc_rows()
    missing = sorted(set(COMMANDS) - set(rows))
    stale = sorted(set(rows) - set(COMMANDS))
    repeated = sorted(cmd for cmd, lines in rows.items() if len(lines) > 1)
    assert not missing, f"commands without a row in {DOC.name}: {missing}"
    assert not stale, f"rows in {DOC.name} for commands tensorar.cli.COMMANDS does not have: {stale}"
    assert not repeated, f"commands with more than one row in {DOC.name}: {repeated}"


@pytest.mark.parametrize("cmd", sorted(COMMANDS))
def test_row_documents_every_flag(cmd, monkeypatch, capsys):
    rows = doc_rows().get(cmd)
    assert rows, f"{DOC.name} has no row starting with '| `{cmd}'"
    row = rows[0]
    parser, help_text = stage_parser(cmd, monkeypatch, capsys)
    options = long_options(parser, help_text)
    assert options, f"found no long options for {cmd}"
    undocumented = sorted(o for o in options if not mentions(row, o))
    assert not undocumented, f"{DOC.name}: the `{cmd}` row does not name {undocumented}"
    unknown = sorted(set(LONG_OPTION.findall(row)) - options - {"--help"})
    assert not unknown, f"{DOC.name}: the `{cmd}` row names options `{cmd}` does not have: {unknown}"
    choices = sorted(c for c in positional_choices(parser) if not mentions(command_cell(row), c))
    assert not choices, f"{DOC.name}: the `{cmd}` command line does not name the positional choices {choices}"
