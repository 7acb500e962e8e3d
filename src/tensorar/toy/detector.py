"""The toy detector (ours): GenEval's detector + colour classifier and DPG-Bench's VQA model for canvases
of `tensorar.toy.captioned_digits`.

The official GenEval (Mask2Former + CLIP) and DPG-Bench (mPLUG) models cannot run on the embedded toy, so
this stands in for all three, with the toy digits classifier (`ToyClassifier`, the toy feature network,
trained by `tensorar train_classifier`) as its recogniser. Scores computed with it are toy scores, never
compared with the paper's.

Per canvas (a 2x2 grid of square cells, side = canvas side / 2):
- every cell whose ink (mean over its pixels of the brightest channel, in [0, 1]) exceeds `ink_threshold`
  is one detection, its box the cell's pixel box [x1, y1, x2, y2];
- its class and score: the classifier's argmax and softmax probability on the cell's grey image, the
  format the classifier was trained on (make_digits: grey RGB, R = G = B, nearest-upscaled to the
  classifier's side). Grey = the brightest channel, which for every palette colour is the glyph's grey
  level exactly (captioned_digits paints channel = v * rgb / 16 with max(rgb) = 255);
- its colour: the palette colour (captioned_digits.PALETTE, six of GenEval's colour names) nearest in
  chromaticity (cosine of the summed RGB of the crop), so a dim glyph is not "black".

GenEval: `ToyDetector` implements geneval's `Detector` (`detect`) and `ColorClassifier` (`classify`)
protocols, so `geneval.export_raw_detections` / `geneval.score_folder` run it unchanged;
`write_geneval_detections` writes the same raw file faster (canvases in batches, a colour on every box),
scored by `geneval.score_raw_detections`.
DPG-Bench: `ToyDetector.answer` implements dpg's `VQAModel` for the question templates of the toy DPG
prompts (`benchmarks.DPGItem.questions`, listed in `QUESTION_PATTERNS`); anything else raises.
`write_dpg_answers` writes the raw answers file for a folder of <item_id>.png grids, scored by
`dpg.score_answers_file`. Answers use the detections scoring above `answer_threshold` (GenEval's 0.3):
    Is there a 3? / an 8?            some 3
    Are there three 5s?              exactly three 5s
    Is the 3 red?                    some 3 is red
    Are the 5s green?                every 5 is green (and there is one)
    Is the 3 to the left of the 7?   some (3, 7) pair has the relation by GenEval's rule (also "to the
                                     right of", "above", "below")
    Is the background black?         at least a quarter of the pixels are near black (< 32 in every channel)
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tensorar.checkpoint import read_checkpoint
from tensorar.toy.captioned_digits import (
    CLASSES,
    GRID,
    NUMBER_WORDS,
    PALETTE,
    RELATION_PHRASES,
)
from tensorar.evaluation import dpg, geneval
from tensorar.toy.features import (
    ToyClassifier,
    ToyFeatureExtractor,
    to_model_input,
)

_PALETTE_NAMES = tuple(PALETTE)
_PALETTE_DIRS = np.asarray([PALETTE[c] for c in _PALETTE_NAMES], dtype=np.float64)
_PALETTE_DIRS /= np.linalg.norm(_PALETTE_DIRS, axis=1, keepdims=True)  # (6, 3) unit chromaticity directions
_COLOR = "|".join(geneval.COLORS)
_DIGIT = "|".join(CLASSES)
_WORDS = {w: n for n, w in NUMBER_WORDS.items()}
_REL_BY_PHRASE = {phrase: rel for rel, phrase in RELATION_PHRASES.items()}
QUESTION_PATTERNS = {
    "exists": re.compile(rf"Is there an? (?P<d>{_DIGIT})\?"),
    "count": re.compile(rf"Are there (?P<n>{'|'.join(_WORDS)}) (?P<d>{_DIGIT})s\?"),
    "color_one": re.compile(rf"Is the (?P<d>{_DIGIT}) (?P<c>{_COLOR})\?"),
    "color_all": re.compile(rf"Are the (?P<d>{_DIGIT})s (?P<c>{_COLOR})\?"),
    "relation": re.compile(rf"Is the (?P<a>{_DIGIT}) (?P<rel>{'|'.join(_REL_BY_PHRASE)}) the (?P<b>{_DIGIT})\?"),
    "background": re.compile(r"Is the background black\?"),
}
BLACK_LEVEL = 32  # a pixel below this in every channel is background (glyph level v <= 1 of 16)
BLACK_FRACTION = 0.25  # a digits glyph leaves >= 39 % of its cell at level <= 1


@dataclass(frozen=True)
class CellDetection:
    cell: int  # 0 TL, 1 TR, 2 BL, 3 BR
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 pixels
    label: str  # "0".."9"
    score: float  # softmax probability of `label`
    color: str  # a palette colour name


def color_of(crop: np.ndarray) -> str:
    """The palette colour nearest in chromaticity to a (h, w, 3) uint8 crop (cosine of its summed RGB)."""
    total = np.asarray(crop, dtype=np.float64).reshape(-1, 3).sum(0)  # (3,)
    if not total.any():
        return "white"  # no ink at all: no chromaticity; never reached for a detection above threshold
    return _PALETTE_NAMES[int(np.argmax(_PALETTE_DIRS @ (total / np.linalg.norm(total))))]


def grey_cells(images: np.ndarray) -> np.ndarray:
    """(B, 2c, 2c, 3) uint8 canvases -> (B, 4, c, c) uint8 brightest-channel images of the cells."""
    b, h = images.shape[:2]
    c = h // GRID
    grey = images.max(axis=-1)  # (B, H, W)
    return grey.reshape(b, GRID, c, GRID, c).transpose(0, 1, 3, 2, 4).reshape(b, GRID * GRID, c, c)


class ToyDetector:
    """Detector, colour classifier and VQA model of the toy benchmarks (module docstring)."""

    def __init__(self, classifier: ToyClassifier, *, ink_threshold: float = 0.1, answer_threshold: float = 0.3,
                 batch_size: int = 1024):
        if classifier.config.num_classes != len(CLASSES):
            raise ValueError(f"the toy detector needs a {len(CLASSES)}-class digits classifier, "
                             f"got {classifier.config.num_classes} classes")
        self.classifier = classifier.eval()
        self.ink_threshold = ink_threshold
        self.answer_threshold = answer_threshold
        self.batch_size = batch_size
        self._last: tuple[bytes, list[CellDetection]] | None = None  # answer(): one crop, many questions

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **kwargs) -> ToyDetector:
        """From train_classifier's CLS.pt; its classes must be the digits "0".."9" in order."""
        model = ToyFeatureExtractor.from_checkpoint(path).model.cpu()  # names the fix when the file is missing
        classes = read_checkpoint(path).get("classes")
        if classes is not None and tuple(classes) != CLASSES:
            raise ValueError(f"{path}: classifier classes {classes} are not the digits {list(CLASSES)}")
        return cls(model, **kwargs)

    # ---------------------------------------------------------------------------------------------
    # Detection
    # ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def find(self, images: np.ndarray | Sequence[np.ndarray]) -> list[list[CellDetection]]:
        """Detections of every canvas in a batch (B, 2c, 2c, 3) uint8, cells in order."""
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        square = images.ndim == 4 and images.shape[1] == images.shape[2] and images.shape[1] % GRID == 0
        if images.dtype != np.uint8 or not square or images.shape[-1] != 3:
            raise ValueError(f"expected square (B, 2c, 2c, 3) uint8 canvases, got {images.dtype} {images.shape}")
        c = images.shape[1] // GRID
        grey = grey_cells(images)  # (B, 4, c, c)
        ink = grey.reshape(*grey.shape[:2], -1).mean(-1) / 255.0  # (B, 4)
        where = np.argwhere(ink > self.ink_threshold)  # (K, 2): image, cell
        labels, scores = self._classify_digits(grey[where[:, 0], where[:, 1]]) if len(where) else ([], [])
        out: list[list[CellDetection]] = [[] for _ in range(len(images))]
        for (i, k), label, score in zip(where.tolist(), labels, scores):
            y, x = divmod(k, GRID)
            crop = images[i, y * c:(y + 1) * c, x * c:(x + 1) * c]
            box = (float(x * c), float(y * c), float((x + 1) * c), float((y + 1) * c))
            out[i].append(CellDetection(k, box, CLASSES[label], score, color_of(crop)))
        return out

    def _classify_digits(self, grey: np.ndarray) -> tuple[list[int], list[float]]:
        """(K, c, c) uint8 grey cells -> argmax class and its softmax probability, per cell."""
        size = self.classifier.config.image_size
        c = grey.shape[-1]
        if size % c == 0:
            grey = grey.repeat(size // c, axis=1).repeat(size // c, axis=2)  # nearest, as make_digits upscales
        x = torch.from_numpy(np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=-1)))  # (K, s, s, 3) R = G = B
        device = next(self.classifier.parameters()).device
        probs = []
        for i in range(0, len(x), self.batch_size):
            logits = self.classifier(to_model_input(x[i:i + self.batch_size].to(device), size))["logits"]
            probs.append(logits.float().softmax(-1).cpu())  # (k, 10)
        probs = torch.cat(probs)  # (K, 10)
        score, label = probs.max(-1)
        return label.tolist(), score.tolist()

    def detect(self, image: np.ndarray) -> dict[str, geneval.ClassDetections]:
        """geneval.Detector: every class in order (empty where none), as mmdet returns them."""
        found = self.find(image)[0]
        return {name: geneval.ClassDetections(np.asarray([d.box for d in found if d.label == name], np.float32),
                                              np.asarray([d.score for d in found if d.label == name], np.float32))
                for name in CLASSES}

    def classify(self, crops: Sequence[np.ndarray], classname: str) -> list[str]:
        """geneval.ColorClassifier: the chromaticity colour of each crop."""
        return [color_of(crop) for crop in crops]

    # ---------------------------------------------------------------------------------------------
    # Questions (dpg.VQAModel)
    # ---------------------------------------------------------------------------------------------
    def answer(self, image: np.ndarray, question: str) -> str:
        key = np.ascontiguousarray(image).tobytes()
        if self._last is None or self._last[0] != key:
            self._last = (key, self.find(image)[0])
        return answer_question(question, self._last[1], image, self.answer_threshold)


def answer_question(question: str, detections: Sequence[CellDetection], image: np.ndarray,
                    threshold: float = 0.3) -> str:
    """'yes' or 'no' to one toy DPG question (module docstring), from a canvas's detections."""
    dets = [d for d in detections if d.score > threshold]

    def of(digit: str) -> list[CellDetection]:
        return [d for d in dets if d.label == digit]

    for kind, pattern in QUESTION_PATTERNS.items():
        if m := pattern.fullmatch(question.strip()):
            break
    else:
        raise ValueError(f"the toy detector cannot answer {question!r}: it knows only the toy DPG templates "
                         f"({', '.join(p.pattern for p in QUESTION_PATTERNS.values())})")
    if kind == "exists":
        yes = bool(of(m["d"]))
    elif kind == "count":
        yes = len(of(m["d"])) == _WORDS[m["n"]]
    elif kind == "color_one":
        yes = any(d.color == m["c"] for d in of(m["d"]))
    elif kind == "color_all":
        yes = bool(of(m["d"])) and all(d.color == m["c"] for d in of(m["d"]))
    elif kind == "relation":
        rel = _REL_BY_PHRASE[m["rel"]]
        yes = any(rel in geneval.relative_position(a.box, b.box) for a in of(m["a"]) for b in of(m["b"]))
    else:
        yes = float((np.asarray(image).max(axis=-1) < BLACK_LEVEL).mean()) >= BLACK_FRACTION
    return "yes" if yes else "no"


# --------------------------------------------------------------------------------------------------
# Raw files for the real scorers
# --------------------------------------------------------------------------------------------------
def write_geneval_detections(sample_root: str | os.PathLike, detector: ToyDetector, path: str | os.PathLike,
                             batch_size: int = 256) -> int:
    """GenEval raw detections (geneval.py's format) for a GenEval-layout folder of generated canvases;
    returns the number of images. Score with `geneval.score_raw_detections(path)`.

    The same file as `geneval.export_raw_detections(sample_root, detector, detector, path)` except that
    every box carries its colour (the official flow classifies only the boxes the colour rule reads; the
    format allows more, and the scores are the same), with the canvases detected in batches."""
    samples = geneval.list_samples(sample_root)
    entries = []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        found = detector.find(np.stack([geneval.load_image(s.path) for s in chunk]))
        for s, dets in zip(chunk, found):
            by_class = {name: [d for d in dets if d.label == name] for name in CLASSES}  # detector's class order
            entries.append({"filename": s.filename, "metadata": s.metadata, "detections": {
                name: {"boxes": [list(d.box) for d in ds], "scores": [d.score for d in ds],
                       "colors": [d.color for d in ds]} for name, ds in by_class.items()}})
    geneval.write_raw_detections(path, entries)
    return len(entries)


def dpg_answers(questions: dict[str, dpg.ItemQuestions], grids: dict[str, np.ndarray], detector: ToyDetector,
                resolution: int, pic_num: int = 4) -> dict[tuple[str, int], dict[str, str]]:
    """{(item_id, crop): {question: answer}} for every item with a grid: each crop detected once."""
    out = {}
    for item, grid in grids.items():
        crops = dpg.crop_grid(grid, resolution, pic_num)
        for k, (crop, found) in enumerate(zip(crops, detector.find(np.stack(crops)))):
            out[(item, k)] = {q: answer_question(q, found, crop, detector.answer_threshold)
                              for q in questions[item].questions.values()}
    return out


def write_dpg_answers(csv_path: str | os.PathLike, grid_root: str | os.PathLike, detector: ToyDetector,
                      path: str | os.PathLike, resolution: int | None = None, pic_num: int = 4) -> int:
    """DPG raw answers (dpg.py's format) for the <item_id>.png 2x2 grids in `grid_root` that have
    questions in the toy CSV; `resolution` (one sample's side) defaults to half the grid's side. Returns
    the number of items. Score with `dpg.score_answers_file(csv_path, path)`."""
    questions = dpg.load_questions(csv_path, official_quirks=False)  # every row: answers cover row 0 too
    grid_root = Path(grid_root)
    if not grid_root.is_dir():
        raise FileNotFoundError(f"DPG grid folder not found: {grid_root}")
    grids = {p.stem: dpg.read_grid(p) for p in sorted(grid_root.glob("*.png")) if p.stem in questions}
    if not grids:
        raise FileNotFoundError(f"{grid_root} holds no <item_id>.png grid of an item of {csv_path}")
    side = {g.shape[0] for g in grids.values()}
    if resolution is None:
        if len(side) != 1:
            raise ValueError(f"grids of several sizes {sorted(side)}: pass resolution")
        resolution = side.pop() // 2
    dpg.write_answers(path, dpg_answers(questions, grids, detector, resolution, pic_num))
    return len(grids)
