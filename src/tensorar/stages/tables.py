"""Assemble the result tables (Markdown + CSV) and figures (PNG) from per-run metrics files.

    tensorar tables table --manifest JSON --out results/table2.md      (+ results/table2.csv)
    tensorar tables diagnostics --manifest JSON --out results/diagnostics.md
    tensorar tables figures --manifest JSON                              (paths in the manifest)
    tensorar tables claims --manifest JSON --out results/claims.md      (+ claims.json, claims.png)

The manifest (built by `tensorar.plan` for the workflow) says which metrics / sampler-stats / diagnose
JSON files make each row, so nothing here knows the workflow's folder layout; the renderers live in
tensorar/reporting/.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from tensorar.errors import run_stage
from tensorar.reporting.claims import write_claims
from tensorar.reporting.diagnostics import write_diagnostics
from tensorar.reporting.plots import write_figures
from tensorar.reporting.tables import write_table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tensorar tables", description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("table", "diagnostics", "figures", "claims"))
    parser.add_argument("--manifest", required=True, help="JSON text (or @path to a JSON file) from the workflow")
    parser.add_argument("--out", help="Markdown output (table, diagnostics, claims); CSV / JSON / PNG beside it")
    args = parser.parse_args(argv)
    text = Path(args.manifest[1:]).read_text() if args.manifest.startswith("@") else args.manifest
    manifest = json.loads(text)
    if args.what != "figures" and not args.out:
        parser.error(f"{args.what} needs --out")
    if args.what == "table":
        write_table(manifest, Path(args.out))
    elif args.what == "diagnostics":
        write_diagnostics(manifest, Path(args.out))
    elif args.what == "claims":
        write_claims(manifest, Path(args.out))
    else:
        write_figures(manifest)


if __name__ == "__main__":
    run_stage(main)
