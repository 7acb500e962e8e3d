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

The toy benchmarks' prompt sets (toy GenEval, toy DPG-Bench) are drawn from these captions and layouts in
`tensorar.toy.benchmarks`. `generate` takes their `HeldOut` compositions: it redraws any caption whose
`composition` (tag, digits, counts, colours, relation; word order, mirror relations and the background
phrase ignored) is a held-out benchmark prompt's, and opens the training split with the seen prompts.
(~440 lines, a little above the ~400 guide: every canvas is drawn from its caption's GenEval metadata by
the layout solver here, and the dataset card records palette, caption forms and canvas layout together,
so captions, canvases and the dataset folder are one format; the prompt sets built on them are apart.)
"""
from __future__ import annotations

import functools
import hashlib
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
from tensorar.evaluation import geneval
from tensorar.fileio import atomic_write_json

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
