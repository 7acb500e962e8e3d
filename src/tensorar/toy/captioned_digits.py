"""Captioned digit canvases: the embedded toy's text-to-image data and its toy benchmark prompts (ours).

Nothing here is from the paper: it is a stand-in that lets the text-to-image side of the workflow run end
to end on 2 CPU cores with no download, on scikit-learn's bundled 8x8 digits (`tensorar.toy.digits`).
Numbers measured on it are toy numbers, never compared with the paper's GenEval / DPG-Bench scores.

Canvas. A (2c, 2c, 3) uint8 RGB image, c = `cell_size` (8 by default: 16x16 canvases), black background,
a 2x2 grid of c x c cells numbered 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right (the order of
DPG-Bench's crops). A cell is empty or holds one digits glyph (8x8 grey levels v in 0..16) painted in one
of the PALETTE colours: channel = (v * rgb + 8) // 16, the rounding of make_digits' grey mapping, so a
white glyph is exactly make_digits' image; c > 8 upscales each glyph by nearest neighbour. Glyphs come
from make_digits' stratified split (same seed and fraction), `split="train"` for training canvases and
`"val"` for held-out ones, so a classifier trained on make_digits' train split has never seen a val glyph.
Several glyphs of one canvas are distinct instances.

Captions, in GenEval's six categories (its class names are the digits "0".."9"; `CAPTION_FORMS`):
    single_object   "a 3"                       counting     "three 5s" (1-4 copies; "one 5")
    two_object      "a 3 and a 7"               colors       "a blue 2"
    position        "a 3 to the left of a 7"    color_attr   "a red 3 and a blue 7"
(also "to the right of", "above", "below"; "an 8"). Digits within a caption are distinct, as are the two
colours of color_attr. A fraction `background_rate` of training captions end in " on a black background",
the phrase behind the toy DPG prompts' global question. Every item carries its caption's metadata in
GenEval's exact format (tag, include [{class, count[, color][, position: [rel, j]]}], [exclude], prompt),
and the canvas is drawn from that metadata: a layout is picked uniformly among the cell assignments that
satisfy it, relations judged by GenEval's own rule (`geneval.relative_position`) on the cell boxes, so
left of / right of hold for side-by-side and diagonal cells, above / below for stacked and diagonal ones.

Dataset folder (`build`), the library's small-set JSONL layout for text-image data (read by
`tensorar.data.captions.CaptionedImages`; real small sets use the same two files):
    DIR/images/<id>.png       <id> = item index zero-padded to 6
    DIR/captions.jsonl        one {"image": "images/<id>.png", "caption": "..."} per line, item order
    DIR/metadata.jsonl        ours: one {"image", "metadata" (GenEval format), "cells"} per line
    DIR/dataset_card.json     settings, counts and sha256 (written last: it marks a finished build)
Written atomically and idempotently, as make_digits writes its ImageFolder.

Toy benchmarks (ours): `toy_geneval_metadata` / `write_toy_geneval` (evaluation_metadata.jsonl in
GenEval's exact format, 20 prompts of distinct compositions per tag, 10 single objects) and `toy_dpg_items` / `write_toy_dpg` (dpg_bench.csv in
DPG-Bench's exact columns + prompts/<item_id>.txt), read unchanged by `tensorar.evaluation.geneval` and
`tensorar.evaluation.dpg`; `tensorar.toy.detector` answers them from generated canvases.

Held-out compositions (ours). A benchmark that repeats training captions measures recall, so the toy
GenEval prompts are held out of the captions by `composition` (tag, digits, counts, colours, relation; word
order, mirror relations and the background phrase ignored): `seen_prompts` picks a fraction of each tag's
prompts as the labelled seen subset (listed in geneval/seen_prompts.txt, each drawn once at the start of the
training split), and `generate` redraws any caption with another benchmark prompt's composition (`HeldOut`).
Every word of an unseen prompt still occurs in training; only the combination is new. The toy DPG prompts
are not held out.
(~550 lines, above the ~400 guide: the prompt sets are drawn from the same caption metadata and
layout solver as the training canvases, and a benchmark item must render as its caption says.)
"""
from __future__ import annotations

import csv
import functools
import hashlib
import io
import itertools
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from tensorar.toy.digits import (
    GREY_MAX,
    SOURCE_SIZE,
    digest_files,
    encode_png,
    fresh_dir,
    replace_dir,
    split_indices,
)
from tensorar.distributed import get_logger
from tensorar.evaluation import dpg, geneval
from tensorar.fileio import atomic_write_json, atomic_write_text

FORMAT_VERSION = 2  # 2: held-out benchmark compositions
CLASSES = tuple(str(d) for d in range(10))  # GenEval class names of the toy: the digit itself
GRID = 2  # cells per side
NUM_CELLS = GRID * GRID
# Six of GenEval's colour names; max channel 255 everywhere, so a glyph's brightest channel is its grey
# level and the classifier sees make_digits' image whatever the colour.
PALETTE = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "purple": (128, 0, 255),
    "white": (255, 255, 255),
}
COLOR_NAMES = tuple(PALETTE)
RELATION_PHRASES = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}
BACKGROUND_SUFFIX = " on a black background"
SPLITS = ("train", "val")
CAPTION_FORMS = {
    "single_object": "a 3", "two_object": "a 3 and a 7", "counting": "three 5s", "colors": "a blue 2",
    "position": "a 3 to the left of a 7", "color_attr": "a red 3 and a blue 7",
}
_IDENTITY_KEYS = ("format_version", "settings", "count", "sha256")
SEEN_PROMPTS_FILE = "seen_prompts.txt"  # ours, beside evaluation_metadata.jsonl


class Cell(NamedTuple):
    digit: str  # "0".."9"
    color: str  # a PALETTE name
    glyph: int  # row of sklearn's load_digits()


class CaptionedCanvas(NamedTuple):
    image: np.ndarray  # (2c, 2c, 3) uint8
    caption: str
    metadata: dict[str, Any]  # GenEval format; metadata["prompt"] == caption
    cells: tuple[Cell | None, ...]  # NUM_CELLS entries, None = empty


# --------------------------------------------------------------------------------------------------
# Glyphs and painting
# --------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _levels() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's digits as int64 (N, 8, 8) grey levels 0..16 and int64 labels (N,)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype(np.int64), digits.target.astype(np.int64)


@functools.lru_cache(maxsize=8)
def _members(split: str, val_fraction: float, split_seed: int) -> dict[str, np.ndarray]:
    """Per class, the load_digits() rows of make_digits' `split` (same stratified rule, seed, fraction)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    _, labels = _levels()
    idx = split_indices(labels, val_fraction, split_seed)[split]
    return {str(d): idx[labels[idx] == d] for d in range(10)}


def _check_cell_size(cell_size: int) -> None:
    if cell_size < SOURCE_SIZE or cell_size % SOURCE_SIZE:
        raise ValueError(f"cell_size must be a positive multiple of {SOURCE_SIZE}, got {cell_size}")


def cell_box(cell: int, cell_size: int = 8) -> list[float]:
    """Pixel box [x1, y1, x2, y2] of a cell (y down), as a detector reports it."""
    y, x = divmod(cell, GRID)
    return [float(x * cell_size), float(y * cell_size), float((x + 1) * cell_size), float((y + 1) * cell_size)]


@functools.lru_cache(maxsize=8)
def cell_relations(cell_size: int = 8) -> dict[tuple[int, int], frozenset[str]]:
    """(a, b) -> GenEval's relations of cell a relative to cell b, for every ordered pair of cells."""
    return {(a, b): frozenset(geneval.relative_position(cell_box(a, cell_size), cell_box(b, cell_size)))
            for a, b in itertools.permutations(range(NUM_CELLS), 2)}


def paint(cells: Sequence[Cell | None], cell_size: int = 8) -> np.ndarray:
    """The canvas of a cell layout: (2c, 2c, 3) uint8, each glyph coloured and upscaled by nearest."""
    _check_cell_size(cell_size)
    values, _ = _levels()
    factor = cell_size // SOURCE_SIZE
    canvas = np.zeros((GRID * cell_size, GRID * cell_size, 3), dtype=np.uint8)  # (2c, 2c, 3)
    for k, cell in enumerate(cells):
        if cell is None:
            continue
        rgb = np.asarray(PALETTE[cell.color], dtype=np.int64)
        block = (values[cell.glyph][..., None] * rgb + GREY_MAX // 2) // GREY_MAX  # (8, 8, 3), round half up
        block = block.repeat(factor, axis=0).repeat(factor, axis=1)  # (c, c, 3)
        y, x = divmod(k, GRID)
        canvas[y * cell_size:(y + 1) * cell_size, x * cell_size:(x + 1) * cell_size] = block
    return canvas


# --------------------------------------------------------------------------------------------------
# Captions and their GenEval metadata
# --------------------------------------------------------------------------------------------------
def article(digit: str) -> str:
    return "an" if digit == "8" else "a"  # "an eight"


def noun_phrase(digit: str, count: int = 1, color: str | None = None) -> str:
    """"a 3", "an 8", "a red 3", "three 5s", "three green 5s"."""
    word = f"{color} {digit}" if color else digit
    if count == 1:
        return f"{article(word)} {word}"
    return f"{NUMBER_WORDS[count]} {word}s"


def caption_of(metadata: dict[str, Any], background: bool = False) -> str:
    """The caption a metadata object stands for (CAPTION_FORMS); `metadata["prompt"]` is this text."""
    tag, include = metadata["tag"], metadata["include"]
    if tag == "counting":
        n = include[0]["count"]
        text = f"{NUMBER_WORDS[n]} {include[0]['class']}" + ("s" if n > 1 else "")  # "one 5", "three 5s"
    elif tag == "position":
        target, obj = include
        text = f"{noun_phrase(obj['class'])} {RELATION_PHRASES[obj['position'][0]]} {noun_phrase(target['class'])}"
    else:
        text = " and ".join(noun_phrase(r["class"], 1, r.get("color")) for r in include)
    return text + (BACKGROUND_SUFFIX if background else "")


def _metadata(tag: str, include: list[dict], exclude: list[dict] | None = None,
              background: bool = False) -> dict[str, Any]:
    # Key order as in GenEval's evaluation_metadata.jsonl: tag, include, [exclude], prompt.
    meta: dict[str, Any] = {"tag": tag, "include": include}
    if exclude is not None:
        meta["exclude"] = exclude
    meta["prompt"] = caption_of(meta, background)
    return meta


def metadata_for(tag: str, digits: Sequence[str], *, count: int = 1, colors: Sequence[str] = (),
                 relation: str | None = None, background: bool = False) -> dict[str, Any]:
    """GenEval metadata of one caption. position: digits = (object, target), "object rel target"."""
    if tag == "single_object":
        return _metadata(tag, [{"class": digits[0], "count": 1}], background=background)
    if tag == "two_object":
        return _metadata(tag, [{"class": d, "count": 1} for d in digits[:2]], background=background)
    if tag == "counting":
        # As GenEval: include N and exclude N + 1, so the count must be exact.
        return _metadata(tag, [{"class": digits[0], "count": count}], [{"class": digits[0], "count": count + 1}],
                         background)
    if tag == "colors":
        return _metadata(tag, [{"class": digits[0], "count": 1, "color": colors[0]}], background=background)
    if tag == "position":
        if relation not in RELATION_PHRASES:
            raise ValueError(f"relation must be one of {tuple(RELATION_PHRASES)}, got {relation!r}")
        # As GenEval: the target comes first, the object names it by index ("a dog right of a teddy bear").
        obj, target = digits[:2]
        return _metadata(tag, [{"class": target, "count": 1},
                               {"class": obj, "count": 1, "position": [relation, 0]}], background=background)
    if tag == "color_attr":
        return _metadata(tag, [{"class": d, "count": 1, "color": c} for d, c in zip(digits[:2], colors[:2])],
                         background=background)
    raise ValueError(f"unknown tag {tag!r}; expected one of {geneval.TAGS}")


def random_metadata(tag: str, rng: np.random.Generator, counts: Sequence[int] = (1, 2, 3, 4),
                    background: bool = False) -> dict[str, Any]:
    digits = [CLASSES[i] for i in rng.permutation(len(CLASSES))[:2]]  # distinct
    colors = [COLOR_NAMES[i] for i in rng.permutation(len(COLOR_NAMES))[:2]]  # distinct
    count = int(rng.choice(counts))
    relation = tuple(RELATION_PHRASES)[int(rng.integers(len(RELATION_PHRASES)))]
    return metadata_for(tag, digits, count=count, colors=colors, relation=relation, background=background)


# Ours: GenEval's relations come in mirror pairs; a composition names each pair by one of them.
_MIRROR = {"right of": "left of", "below": "above"}


def composition(metadata: dict[str, Any]) -> str:
    """What a caption asks for, independent of wording: tag, digits, counts, colours and relation, with
    the order of "a 3 and a 7" and the mirror "a 7 to the right of a 3" / "a 3 to the left of a 7" ignored
    and the background phrase dropped. Two captions with one composition ask for the same canvases."""
    tag, include = metadata["tag"], metadata["include"]
    if tag == "position":
        target, obj = include
        a, rel, b = obj["class"], obj["position"][0], target["class"]
        if rel in _MIRROR:
            a, rel, b = b, _MIRROR[rel], a
        return f"position:{a} {rel} {b}"
    parts = sorted(f"{r['count']}x{r['class']}" + (f"/{r['color']}" if "color" in r else "") for r in include)
    return f"{tag}:" + ",".join(parts)


# --------------------------------------------------------------------------------------------------
# Drawing a canvas that satisfies a metadata object
# --------------------------------------------------------------------------------------------------
def solve_layout(include: Sequence[dict], rng: np.random.Generator, cell_size: int = 8) -> list[int]:
    """The cell of every object instance (include entries expanded by count, in order), drawn uniformly
    among the assignments where every position requirement holds for every (object, target) pair."""
    owners = [r for r, req in enumerate(include) for _ in range(req["count"])]  # include index per instance
    if len(owners) > NUM_CELLS:
        raise ValueError(f"{len(owners)} objects do not fit in {NUM_CELLS} cells")
    relations = cell_relations(cell_size)
    valid = []
    for cells in itertools.permutations(range(NUM_CELLS), len(owners)):
        ok = True
        for r, req in enumerate(include):
            if "position" in req:
                rel, target = req["position"]
                ok = ok and all(rel in relations[(a, b)] for a, o in zip(cells, owners) if o == r
                                for b, t in zip(cells, owners) if t == target)
        if ok:
            valid.append(cells)
    if not valid:
        raise ValueError(f"no layout of the 2x2 grid satisfies {list(include)}")
    return list(valid[int(rng.integers(len(valid)))])


def render_include(include: Sequence[dict], rng: np.random.Generator, split: str = "val", cell_size: int = 8,
                   *, val_fraction: float = 0.2, split_seed: int = 0) -> tuple[np.ndarray, tuple[Cell | None, ...]]:
    """A canvas holding exactly the objects of GenEval-style requirements ({class, count[, color]
    [, position]}), their relations holding, on `split`'s glyphs (distinct instances), colours drawn
    from the palette where none is required. Returns the image and its cells."""
    _check_cell_size(cell_size)
    for req in include:
        if req["class"] not in CLASSES or ("color" in req and req["color"] not in PALETTE):
            raise ValueError(f"cannot draw {req}: classes are {CLASSES}, colours {COLOR_NAMES}")
    by_class = _members(split, val_fraction, split_seed)
    cells: list[Cell | None] = [None] * NUM_CELLS
    layout = solve_layout(include, rng, cell_size)
    instances = [req for req in include for _ in range(req["count"])]
    used: set[int] = set()
    for cell, req in zip(layout, instances):
        pool = [g for g in by_class[req["class"]].tolist() if g not in used]
        glyph = pool[int(rng.integers(len(pool)))]
        used.add(glyph)
        color = req.get("color") or COLOR_NAMES[int(rng.integers(len(COLOR_NAMES)))]
        cells[cell] = Cell(req["class"], color, glyph)
    return paint(cells, cell_size), tuple(cells)


def render_metadata(metadata: dict[str, Any], rng: np.random.Generator, split: str = "val", cell_size: int = 8,
                    *, val_fraction: float = 0.2, split_seed: int = 0) -> CaptionedCanvas:
    """A canvas for which a GenEval metadata object holds (ground truth for its prompt)."""
    for req in metadata.get("exclude", []):
        placed = sum(r["count"] for r in metadata["include"] if r["class"] == req["class"])
        if placed >= req["count"]:
            raise ValueError(f"metadata includes {placed} {req['class']!r} but excludes {req['count']}")
    image, cells = render_include(metadata["include"], rng, split, cell_size, val_fraction=val_fraction,
                                  split_seed=split_seed)
    return CaptionedCanvas(image, metadata["prompt"], metadata, cells)


@dataclass(frozen=True)
class HeldOut:
    """The toy GenEval prompts' compositions as the training captions see them (ours): `unseen` ones never
    occur in a generated caption (any wording, any background); `seen` prompts open the training split,
    each drawn once there, so a seen/unseen comparison has both kinds."""
    unseen: frozenset[str] = frozenset()
    seen: tuple[dict[str, Any], ...] = ()

    def identity(self) -> dict[str, Any]:
        digest = hashlib.sha256("\n".join(sorted(self.unseen) + [m["prompt"] for m in self.seen]).encode())
        return {"unseen": len(self.unseen), "seen": len(self.seen), "sha256": digest.hexdigest()}


def generate(n: int, seed: int = 0, split: str = "train", cell_size: int = 8, *, background_rate: float = 0.2,
             val_fraction: float = 0.2, split_seed: int = 0, held_out: HeldOut = HeldOut()) -> list[CaptionedCanvas]:
    """`n` captioned canvases, tags uniform over GenEval's six, counts 1-4; deterministic in all arguments
    (train and val draw from different streams even with one seed). No caption has a composition in
    `held_out.unseen` (redrawn); a train split starts with `held_out.seen`'s prompts."""
    if n < 0 or not 0.0 <= background_rate <= 1.0 or split not in SPLITS:
        raise ValueError(f"need n >= 0, background_rate in [0, 1] and split in {SPLITS}; got {n}, "
                         f"{background_rate}, {split!r}")
    seen = [m for m in held_out.seen if composition(m) in held_out.unseen]
    if seen:
        raise ValueError(f"prompts both seen and held out: {[m['prompt'] for m in seen]}")
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    out = []
    first = list(held_out.seen) if split == "train" else []
    for _ in range(n):
        if first:
            meta = first.pop(0)
        else:
            tag = geneval.TAGS[int(rng.integers(len(geneval.TAGS)))]
            background = bool(rng.random() < background_rate)
            meta = random_metadata(tag, rng, background=background)
            while composition(meta) in held_out.unseen:
                meta = random_metadata(tag, rng, background=background)
        out.append(render_metadata(meta, rng, split, cell_size, val_fraction=val_fraction, split_seed=split_seed))
    return out


# --------------------------------------------------------------------------------------------------
# The dataset folder
# --------------------------------------------------------------------------------------------------
def render(n: int, seed: int = 0, split: str = "train", cell_size: int = 8, *, background_rate: float = 0.2,
           val_fraction: float = 0.2, split_seed: int = 0, held_out: HeldOut = HeldOut()) -> tuple[dict, dict[str, bytes]]:
    """The dataset in memory: its card and {relative path: bytes}. Pure and deterministic."""
    settings = {"n": n, "seed": seed, "split": split, "cell_size": cell_size, "background_rate": background_rate,
                "digits_split": {"val_fraction": val_fraction, "seed": split_seed},
                "held_out": held_out.identity()}
    items = generate(n, seed, split, cell_size, background_rate=background_rate, val_fraction=val_fraction,
                     split_seed=split_seed, held_out=held_out)
    files: dict[str, bytes] = {}
    captions, metadata = [], []
    for i, item in enumerate(items):
        rel = f"images/{i:06d}.png"
        files[rel] = encode_png(item.image)
        captions.append(json.dumps({"image": rel, "caption": item.caption}))
        metadata.append(json.dumps({"image": rel, "metadata": item.metadata,
                                    "cells": [c._asdict() if c else None for c in item.cells]}))
    files["captions.jsonl"] = "".join(line + "\n" for line in captions).encode()
    files["metadata.jsonl"] = "".join(line + "\n" for line in metadata).encode()
    tags = [item.metadata["tag"] for item in items]
    card = {
        "name": "tensorar-captioned-digits",
        "ours": "a toy stand-in for text-image data (not from the paper); numbers on it are not the paper's",
        "format_version": FORMAT_VERSION,
        "settings": settings,
        "count": {"total": n, "per_tag": {t: tags.count(t) for t in geneval.TAGS}},
        "canvas": f"{GRID * cell_size}x{GRID * cell_size} RGB, black background, {GRID}x{GRID} cells of "
                  f"{cell_size}x{cell_size} (0 TL, 1 TR, 2 BL, 3 BR), glyph channel = (v * rgb + 8) // 16",
        "palette": {name: list(rgb) for name, rgb in PALETTE.items()},
        "caption_forms": CAPTION_FORMS,
        "layout": "images/<id>.png + captions.jsonl ({image, caption} per line) + metadata.jsonl (ours)",
        "sha256": digest_files(files),
        "sha256_rule": "sha256 over sorted relative paths p (within DIR, card excluded) of "
                       "utf8(p + '\\0' + str(len(bytes)) + '\\0') + bytes",
        "pixels_sha256": hashlib.sha256(b"".join(np.ascontiguousarray(it.image).tobytes() for it in items)).hexdigest(),
    }
    return card, files


def verify(out: str | os.PathLike) -> dict | None:
    """The card of a complete, unaltered dataset at `out`, else None."""
    card_path = Path(out) / "dataset_card.json"
    if not card_path.is_file():
        return None
    card = json.loads(card_path.read_text())
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in Path(out).rglob("*")
             if p.is_file() and p != card_path}
    return card if digest_files(files) == card.get("sha256") else None


def build(out: str | os.PathLike, n: int, seed: int = 0, split: str = "train", cell_size: int = 8, *,
          background_rate: float = 0.2, val_fraction: float = 0.2, split_seed: int = 0,
          held_out: HeldOut = HeldOut(), overwrite: bool = False) -> dict:
    """Write the captioned dataset to `out` atomically; a no-op when it is already there. A folder holding
    anything else is refused unless `overwrite`."""
    out = Path(out)
    log = get_logger("captioned_digits")
    card, files = render(n, seed, split, cell_size, background_rate=background_rate, val_fraction=val_fraction,
                         split_seed=split_seed, held_out=held_out)
    existing = verify(out)
    if existing is not None and all(existing.get(k) == card[k] for k in _IDENTITY_KEYS):
        log.info(f"{out} already holds this captioned dataset (same card, checksums verified): nothing to do")
        return existing
    if out.exists() and any(out.iterdir()) and not overwrite:
        what = "a different captioned dataset" if existing is not None else "something that is not a complete dataset"
        raise FileExistsError(f"{out} already holds {what}; pass overwrite=True (--overwrite) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = fresh_dir(out, ".tmp")
    try:
        for rel, data in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)  # the dir rename is the commit point; `verify` re-hashes every file
        atomic_write_json(tmp / "dataset_card.json", card)  # last: its presence marks a finished build
        replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log.info(f"wrote {out}: {n} captioned {split} canvases, sha256 {card['sha256'][:12]}")
    return card


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
