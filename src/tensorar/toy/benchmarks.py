"""The toy benchmarks' prompt sets (ours): toy GenEval and toy DPG-Bench prompts over captioned digits.

Nothing here is from the paper. The prompts are drawn from the caption metadata and the layout solver of
`tensorar.toy.captioned_digits`, so a benchmark item renders as its caption says, and are written in the
official benchmarks' exact formats, read unchanged by `tensorar.evaluation.geneval` and
`tensorar.evaluation.dpg`; `tensorar.toy.detector` answers them from generated canvases.

Toy GenEval: `toy_geneval_metadata` / `write_toy_geneval` (evaluation_metadata.jsonl in GenEval's exact
format, 20 prompts of distinct compositions per tag, 10 single objects). Toy DPG-Bench: `toy_dpg_items` /
`write_toy_dpg` (dpg_bench.csv in DPG-Bench's exact columns + prompts/<item_id>.txt).

Held-out compositions. A benchmark that repeats training captions measures recall, so the toy GenEval
prompts are held out of the captions by `composition` (tag, digits, counts, colours, relation; word order,
mirror relations and the background phrase ignored): `seen_prompts` picks a fraction of each tag's prompts
as the labelled seen subset (listed in geneval/seen_prompts.txt, each drawn once at the start of the
training split), and `held_out` gives `captioned_digits.generate` the `HeldOut` that makes it redraw any
caption with another benchmark prompt's composition. Every word of an unseen prompt still occurs in
training; only the combination is new. The toy DPG prompts are not held out.
"""
from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tensorar.evaluation import dpg, geneval
from tensorar.fileio import atomic_write_text
from tensorar.toy.captioned_digits import (
    BACKGROUND_SUFFIX,
    CLASSES,
    COLOR_NAMES,
    NUMBER_WORDS,
    RELATION_PHRASES,
    HeldOut,
    article,
    composition,
    metadata_for,
    noun_phrase,
    random_metadata,
    render_include,
)

SEEN_PROMPTS_FILE = "seen_prompts.txt"  # beside evaluation_metadata.jsonl

# --------------------------------------------------------------------------------------------------
# Toy GenEval prompts (ours): evaluation_metadata.jsonl in GenEval's format
# --------------------------------------------------------------------------------------------------
def toy_geneval_metadata(seed: int = 0, per_tag: int = 20) -> list[dict[str, Any]]:
    """Deterministic toy prompts, tags in GenEval's order: single_object = each digit once (GenEval lists
    each class once), `per_tag` prompts of distinct compositions for every other tag; counting uses 2-4 as
    GenEval does."""
    rng = np.random.default_rng([seed, 7])  # a stream of its own, apart from generate()'s
    out = [metadata_for("single_object", [d]) for d in CLASSES]
    for tag in geneval.TAGS[1:]:
        seen: set[str] = set()
        while len(seen) < per_tag:
            meta = random_metadata(tag, rng, counts=(2, 3, 4))
            if composition(meta) not in seen:
                seen.add(composition(meta))
                out.append(meta)
    return out


def seen_prompts(metadata: Sequence[dict[str, Any]], seed: int = 0, seen_fraction: float = 0.2) -> list[dict]:
    """The benchmark prompts whose compositions the training captions may hold (ours): per tag,
    round(seen_fraction * n) of its n prompts, drawn at random; the rest are held out (`held_out`)."""
    if not 0.0 <= seen_fraction <= 1.0:
        raise ValueError(f"seen_fraction must be in [0, 1], got {seen_fraction}")
    rng = np.random.default_rng([seed, 13])
    out = []
    for tag in geneval.TAGS:
        of_tag = [m for m in metadata if m["tag"] == tag]
        pick = sorted(rng.permutation(len(of_tag))[:round(seen_fraction * len(of_tag))].tolist())
        out += [of_tag[i] for i in pick]
    return out


def held_out(metadata: Sequence[dict[str, Any]], seen: Sequence[dict[str, Any]]) -> HeldOut:
    """The training captions' view of a benchmark: every composition but the seen prompts' held out."""
    seen_keys = {composition(m) for m in seen}
    return HeldOut(frozenset(composition(m) for m in metadata) - seen_keys, tuple(seen))


def write_toy_geneval(out: str | os.PathLike, seed: int = 0, per_tag: int = 20,
                      seen: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Write GenEval's prompts folder for the toy: evaluation_metadata.jsonl, generation_prompts.txt (same
    order), object_names.txt (the detector's classes, "0".."9") and, ours, seen_prompts.txt (the prompts
    whose compositions the training captions hold; every other one is held out of them)."""
    out = Path(out)
    metadata = toy_geneval_metadata(seed, per_tag)
    atomic_write_text(out / "evaluation_metadata.jsonl", "".join(json.dumps(m) + "\n" for m in metadata))
    atomic_write_text(out / "generation_prompts.txt", "".join(m["prompt"] + "\n" for m in metadata))
    atomic_write_text(out / "object_names.txt", "".join(c + "\n" for c in CLASSES))
    atomic_write_text(out / SEEN_PROMPTS_FILE, "".join(m["prompt"] + "\n" for m in seen))
    return metadata


# --------------------------------------------------------------------------------------------------
# Toy DPG-Bench prompts (ours): dpg_bench.csv in DPG-Bench's columns + prompts/<item_id>.txt
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ToyObject:
    digit: str
    count: int = 1
    color: str | None = None


@dataclass(frozen=True)
class DPGItem:
    """A toy dense prompt: objects, at most one relation "objects[0] rel objects[1]", an optional black
    background (the global question)."""
    item_id: str
    objects: tuple[ToyObject, ...]
    relation: str | None = None
    background: bool = False

    @property
    def prompt(self) -> str:
        phrases = [noun_phrase(o.digit, o.count, o.color) for o in self.objects]
        if self.relation:
            head = f"{phrases[0]} {RELATION_PHRASES[self.relation]} {phrases[1]}"
            text = " and ".join([head] + phrases[2:])
        else:
            text = " and ".join(phrases)
        return text + (BACKGROUND_SUFFIX if self.background else "")

    def include(self) -> list[dict[str, Any]]:
        """GenEval-style requirements (for drawing a ground-truth canvas): target of the relation first."""
        order = [1, 0] + list(range(2, len(self.objects))) if self.relation else list(range(len(self.objects)))
        out = []
        for k in order:
            o = self.objects[k]
            req: dict[str, Any] = {"class": o.digit, "count": o.count}
            if o.color:
                req["color"] = o.color
            if self.relation and k == 0:
                req["position"] = [self.relation, 0]
            out.append(req)
        return out

    def questions(self) -> list[dict[str, str]]:
        """The CSV rows of this item (DSG tuples; proposition ids from 1; parents by id)."""
        rows: list[tuple[str, str, str, str, str]] = []  # dependency, broad, detailed, tuple, question

        def add(dep: str, broad: str, detailed: str, tup: str, question: str) -> int:
            rows.append((dep, broad, detailed, tup, question))
            return len(rows)

        if self.background:
            add("0", "global", "", "global - (black background)", "Is the background black?")
        entity = []
        for o in self.objects:
            e = add("0", "entity", "whole", f"entity - whole ({o.digit})", f"Is there {article(o.digit)} {o.digit}?")
            entity.append(e)
            if o.count > 1:
                add(str(e), "other", "count", f"other - count ({o.digit}, =={o.count})",
                    f"Are there {NUMBER_WORDS[o.count]} {o.digit}s?")
            if o.color:
                question = f"Are the {o.digit}s {o.color}?" if o.count > 1 else f"Is the {o.digit} {o.color}?"
                add(str(e), "attribute", "color", f"attribute - color ({o.digit}, {o.color})", question)
        if self.relation:
            a, b = self.objects[0].digit, self.objects[1].digit
            add(f"{entity[0]},{entity[1]}", "relation", "spatial", f"relation - spatial ({a}, {b}, {self.relation})",
                f"Is the {a} {RELATION_PHRASES[self.relation]} the {b}?")
        keywords = ", ".join(noun_phrase(o.digit, o.count, o.color).removeprefix("a ").removeprefix("an ")
                             for o in self.objects)  # "3", "red 3", "three green 5s"
        return [dict(zip(dpg.CSV_COLUMNS, (self.item_id, self.prompt, keywords, str(i), *row)))
                for i, row in enumerate(rows, 1)]


# Item kinds, cycled: the first has no question that depends on proposition 1, because the official
# scorer skips the CSV's first data row (dpg.py quirk 1) and would otherwise drop that image.
DPG_KINDS = ("two_objects", "color_attr", "color_position", "count_color", "position_third", "position_background")


def toy_dpg_items(seed: int = 0, n: int = 30) -> list[DPGItem]:
    rng = np.random.default_rng([seed, 11])  # a stream of its own
    rels = tuple(RELATION_PHRASES)
    items = []
    for i in range(n):
        kind = DPG_KINDS[i % len(DPG_KINDS)]
        d = [CLASSES[j] for j in rng.permutation(len(CLASSES))[:3]]
        c = [COLOR_NAMES[j] for j in rng.permutation(len(COLOR_NAMES))[:2]]
        rel = rels[int(rng.integers(len(rels)))]
        item_id = f"toydigits{i:02d}"
        if kind == "two_objects":
            item = DPGItem(item_id, (ToyObject(d[0]), ToyObject(d[1])))
        elif kind == "color_attr":
            item = DPGItem(item_id, (ToyObject(d[0], color=c[0]), ToyObject(d[1], color=c[1])))
        elif kind == "color_position":
            item = DPGItem(item_id, (ToyObject(d[0], color=c[0]), ToyObject(d[1], color=c[1])), rel)
        elif kind == "count_color":
            item = DPGItem(item_id, (ToyObject(d[0], int(rng.integers(2, 5)), c[0]),))
        elif kind == "position_third":
            item = DPGItem(item_id, (ToyObject(d[0]), ToyObject(d[1]), ToyObject(d[2], color=c[0])), rel)
        else:
            item = DPGItem(item_id, (ToyObject(d[0]), ToyObject(d[1], color=c[0])), rel, background=True)
        items.append(item)
    return items


def write_toy_dpg(out: str | os.PathLike, seed: int = 0, n: int = 30) -> list[DPGItem]:
    """Write `out/dpg_bench.csv` (DPG-Bench's columns) and `out/prompts/<item_id>.txt`."""
    out = Path(out)
    items = toy_dpg_items(seed, n)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=dpg.CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for item in items:
        writer.writerows(item.questions())
    atomic_write_text(out / "dpg_bench.csv", buf.getvalue())
    for item in items:
        atomic_write_text(out / "prompts" / f"{item.item_id}.txt", item.prompt + "\n")
    return items


def render_dpg_item(item: DPGItem, rng: np.random.Generator, split: str = "val", cell_size: int = 8,
                    n: int = 4) -> list[np.ndarray]:
    """`n` ground-truth canvases of a toy DPG item (the 2x2 grid `dpg.write_grid` expects holds 4)."""
    return [render_include(item.include(), rng, split, cell_size)[0] for _ in range(n)]
