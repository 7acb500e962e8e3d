"""GenEval (Ghosh et al., 2023) scoring rules, re-implemented in numpy, plus its folder layout.

Mirrors djghosh13/geneval @ af4902f24d3ca90ebbb446dd9891a59e0f82725f:
    evaluation/evaluate_images.py   keep_detections (threshold, top-16, no NMS), evaluate_image
                                    (include / exclude / colour / position rules, reason strings),
                                    relative_position, masked_crop (the ImageCrops dataset)
    evaluation/summary_scores.py    summarize
The detector (Mask2Former) and the colour classifier (CLIP ViT-L-14) are NOT here: they plug in
through the `Detector` and `ColorClassifier` protocols, or run in their own environment and hand us
their raw outputs in a file (format below). `tests/test_geneval.py` reproduces the official code's
results on synthetic detections (spec section 4).

Differences from the official script (none changes a score on the official defaults):
- Only the default `max_overlap=1.0` (no NMS) is supported.
- Ties in score: the official `np.argsort(scores)[::-1]` orders tied boxes however numpy's default
  sort happens to (machine dependent); we use a stable sort reversed, i.e. the later box first, which is
  what numpy's sort does for the small arrays a detector gives.
- Position reasons join several relations in the fixed order left of, right of, above, below; the
  official joins a Python set, whose order changes from run to run.
- Folders are read in sorted order and sample names must match `\\d+\\.png` in full (the official uses
  `os.listdir` order and `re.match`, which also accepts e.g. `0000.png.bak`).
- `filename` in a result is the image path relative to the sample folder.

Raw detections file (JSON Lines, one object per image; written by `write_raw_detections`):
    {"filename": "00012/samples/0003.png",          # relative to the sample folder
     "metadata": {...},                             # that prompt's metadata object, as in metadata.jsonl
     "detections": {                                # class name -> detections; key order = the
        "dog": {"boxes": [[x1, y1, x2, y2], ...],   # detector's class order (it orders `details`)
                "scores": [0.93, ...],              # one per box, any order, NOT thresholded
                "colors": ["brown", null, ...]}}}   # optional: one of COLORS or null per box
Boxes are pixels, (x1, y1) top-left, y pointing down. A colour is needed for every box the colour rule
looks at (the top-`count` kept boxes of a class with a colour requirement); `export_raw_detections`
classifies the top-`max_objects` kept boxes of those classes from the mask-composited crops.

(~450 lines, above the ~400 guide: this is one official program, evaluate_images.py + summary_scores.py,
with the folder layout its main() walks and the two ways its detections arrive, in process or through the
raw file; both paths run the same rules and the same metadata check and colour crops, which would
otherwise become public helpers shared across modules.)
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image, ImageOps

from tensorar.errors import InputError
from tensorar.fileio import atomic_path, atomic_write_text, image_errors, read_json, read_jsonl

TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
TABLE_COLUMNS = TAGS + ("overall",)  # paper Table 3, in order
COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
RELATIONS = ("left of", "right of", "above", "below")
_SAMPLE_NAME = re.compile(r"\d+\.png")


@dataclass(frozen=True)
class GenEvalRules:
    """The `--options` defaults of evaluate_images.py."""
    threshold: float = 0.3
    counting_threshold: float = 0.9  # tag "counting" only: counts must be exact at high confidence
    max_objects: int = 16  # per class, after sorting by score
    position_threshold: float = 0.1  # margin, as a fraction of the two boxes' summed sizes
    bgcolor: tuple[int, int, int] = (153, 153, 153)  # "#999" behind the instance mask

    def threshold_for(self, tag: str) -> float:
        return self.counting_threshold if tag == "counting" else self.threshold


@dataclass(frozen=True)
class ClassDetections:
    """One class's detections in one image, in any order. Stored as float32, as mmdet returns them:
    the threshold test and the position rule run in float32 (0.3 as float32 is not > 0.3)."""
    boxes: np.ndarray  # (N, 4) x1, y1, x2, y2
    scores: np.ndarray  # (N,)
    masks: np.ndarray | None = None  # (N, H, W) bool instance masks
    colors: Sequence[str | None] | None = None  # already classified colours, one per box

    def __post_init__(self):
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)  # (N, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)  # (N,)
        if len(scores) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
        if self.masks is not None and len(self.masks) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(self.masks)} masks")
        if self.colors is not None and len(self.colors) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(self.colors)} colours")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)


Detections = Mapping[str, ClassDetections]  # class name -> its detections


class Detector(Protocol):
    """An instance detector (the official one: Mask2Former Swin-S, COCO, via mmdet 2.x)."""
    def detect(self, image: np.ndarray) -> Detections:  # image: (H, W, 3) uint8
        ...


class ColorClassifier(Protocol):
    """Zero-shot colour classifier (the official one: CLIP ViT-L-14 over COLORS, 3 templates)."""
    def classify(self, crops: Sequence[np.ndarray], classname: str) -> Sequence[str]:
        ...  # one colour name (from COLORS) per (h, w, 3) uint8 crop


@dataclass(frozen=True)
class _Kept:
    row: np.ndarray  # (5,) float32: x1, y1, x2, y2, score (what `details` lists)
    mask: np.ndarray | None
    color: str | None
    index: int  # position in the detector's output for that class


# --------------------------------------------------------------------------------------------------
# Prompt metadata and the folder layout
# --------------------------------------------------------------------------------------------------
def load_metadata(path: str | Path) -> list[dict[str, Any]]:
    """evaluation_metadata.jsonl: one prompt's metadata (tag, include, [exclude], prompt) per line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GenEval metadata not found: {path}")
    out = [_check_metadata(meta, f"{path}:{lineno}") for lineno, meta in read_jsonl(path)]
    if not out:
        raise InputError(f"{path} holds no prompts: an empty prompt file would score nothing")
    return out


def _check_metadata(meta: Any, where: str) -> dict[str, Any]:
    if not isinstance(meta, dict):
        raise InputError(f"{where}: metadata must be a JSON object")
    for key in ("tag", "include", "prompt"):
        if key not in meta:
            raise InputError(f"{where}: metadata has no {key!r} key")
    if meta["tag"] not in TAGS:
        raise InputError(f"{where}: unknown tag {meta['tag']!r}; expected one of {TAGS}")
    if not isinstance(meta["prompt"], str) or not meta["prompt"].strip():
        raise InputError(f"{where}: the prompt must be a non-empty string, got {meta['prompt']!r}")
    return meta


def write_prompt_images(root: str | Path, index: int, metadata: Mapping[str, Any],
                        images: Sequence[np.ndarray]) -> Path:
    """Write <root>/<index:05d>/metadata.jsonl and samples/<n:04d>.png (GenEval generates 4 per prompt)."""
    folder = Path(root) / f"{index:05d}"
    for n, image in enumerate(images):
        save_png(folder / "samples" / f"{n:04d}.png", image)
    # Written last, so a folder with metadata is complete.
    atomic_write_text(folder / "metadata.jsonl", json.dumps(dict(metadata)) + "\n")
    return folder


@dataclass(frozen=True)
class SampleImage:
    filename: str  # relative to the sample folder, e.g. "00012/samples/0003.png"
    path: Path
    metadata: dict[str, Any]


def list_samples(root: str | Path) -> list[SampleImage]:
    """Every image of a GenEval sample folder, as the official main() walks it (digit-named subfolders)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"GenEval sample folder not found: {root}")
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit()):
        meta_path = folder / "metadata.jsonl"
        if not meta_path.is_file():
            raise FileNotFoundError(f"GenEval prompt folder without metadata: {meta_path}")
        metadata = _check_metadata(read_json(meta_path), str(meta_path))
        samples = folder / "samples"
        names = sorted(p.name for p in samples.iterdir()) if samples.is_dir() else []
        for name in names:
            if _SAMPLE_NAME.fullmatch(name) and (samples / name).is_file():
                out.append(SampleImage(f"{folder.name}/samples/{name}", samples / name, metadata))
    return out


def save_png(path: str | Path, image: np.ndarray) -> None:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{path}: expected a (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def load_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8, EXIF-transposed and converted to RGB as the official script reads it."""
    with image_errors(path), Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


# --------------------------------------------------------------------------------------------------
# The rules (evaluate_images.py)
# --------------------------------------------------------------------------------------------------
def keep_detections(detections: Detections, tag: str, rules: GenEvalRules = GenEvalRules(),
                    classnames: Sequence[str] | None = None) -> dict[str, list[_Kept]]:
    """Per class: scores > threshold (strict, float32), best first, at most max_objects; no NMS.
    Classes come out in `classnames` order (the detector's; it orders `details`), else mapping order."""
    order = list(detections) if classnames is None else list(classnames)
    if classnames is not None and (unknown := set(detections) - set(classnames)):
        raise ValueError(f"detections for classes not in classnames: {sorted(unknown)}")
    threshold = np.float32(rules.threshold_for(tag))
    kept = {}
    for name in order:
        if name not in detections:
            continue
        det = detections[name]
        ranked = np.argsort(det.scores, kind="stable")[::-1]  # best first; see module docstring on ties
        ranked = ranked[det.scores[ranked] > threshold][: rules.max_objects]
        if len(ranked):
            kept[name] = [
                _Kept(np.append(det.boxes[i], det.scores[i]),  # (5,) float32
                      None if det.masks is None else det.masks[i],
                      None if det.colors is None else det.colors[i], i)
                for i in ranked.tolist()
            ]
    return kept


def relative_position(box_a: Sequence[float], box_b: Sequence[float],
                      position_threshold: float = 0.1) -> set[str]:
    """Where box A lies relative to box B: a subset of RELATIONS (empty when they are too close)."""
    boxes = np.asarray([box_a[:4], box_b[:4]], dtype=np.float32).reshape(2, 2, 2)  # (box, corner, xy)
    center_a, center_b = boxes.mean(axis=1)  # (2,) each
    dim_a, dim_b = np.abs(boxes[:, 1] - boxes[:, 0])  # (2,) each: width, height
    offset = center_a - center_b
    # Shrink the offset by a margin of 0.1 x the summed sizes: touching boxes have no relation.
    revised = np.maximum(np.abs(offset) - np.float32(position_threshold) * (dim_a + dim_b), 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    return {rel for rel, hit in zip(RELATIONS, (dx < -0.5, dx > 0.5, dy < -0.5, dy > 0.5)) if hit}


def masked_crop(image: np.ndarray, box: Sequence[float], mask: np.ndarray | None,
                bgcolor: Sequence[int] = (153, 153, 153)) -> np.ndarray:
    """The colour classifier's input: the instance over a grey background, cropped to its box.
    Matches PIL's Image.composite + Image.crop: corners rounded half-to-even, zeros outside the image."""
    image = np.asarray(image, dtype=np.uint8)  # (H, W, 3)
    if mask is not None:
        if mask.shape != image.shape[:2]:
            raise ValueError(f"mask shape {mask.shape} differs from image shape {image.shape[:2]}")
        image = np.where(np.asarray(mask, dtype=bool)[..., None], image, np.asarray(bgcolor, np.uint8))
    x0, y0, x1, y1 = (round(float(v)) for v in box[:4])  # Python's round: half to even
    out = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0), 3), dtype=np.uint8)  # (h, w, 3)
    h, w = image.shape[:2]
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0: sy1 - y0, sx0 - x0: sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


ColorFn = Callable[[str, Sequence[_Kept]], Sequence[str]]


def evaluate(metadata: Mapping[str, Any], kept: Mapping[str, Sequence[_Kept]], colors_of: ColorFn,
             rules: GenEvalRules = GenEvalRules()) -> tuple[bool, str]:
    """The official `evaluate`: include clauses ANDed, exclude clauses ORed; colour and position are
    checked on the top-`count` boxes only; position only when the object itself matched."""
    correct = True
    reasons: list[str] = []
    matched_groups: list[Sequence[_Kept] | None] = []
    for req in metadata.get("include", []):
        name, count = req["class"], req["count"]
        found = list(kept.get(name, []))[:count]
        matched = True
        if len(found) < count:
            matched = False
            reasons.append(f"expected {name}>={count}, found {len(found)}")
        else:
            if "color" in req:
                colors = list(colors_of(name, found))
                if colors.count(req["color"]) < count:
                    matched = False
                    seen = ", ".join(f"{colors.count(c)} {c}" for c in COLORS if c in colors)
                    reasons.append(f"expected {req['color']} {name}>={count}, found "
                                   f"{colors.count(req['color'])} {req['color']}; and {seen}")
            if "position" in req and matched:
                rel, target = req["position"]
                if matched_groups[target] is None:
                    matched = False
                    reasons.append(f"no target for {name} to be {rel}")
                else:
                    matched = _check_position(name, rel, found, matched_groups[target], rules, reasons)
        correct = correct and matched
        matched_groups.append(found if matched else None)
    for req in metadata.get("exclude", []):
        n = len(kept.get(req["class"], []))
        if n >= req["count"]:
            correct = False
            reasons.append(f"expected {req['class']}<{req['count']}, found {n}")
    return correct, "\n".join(reasons)


def _check_position(name, rel, found, targets, rules, reasons) -> bool:
    # Every (object, target) pair must have the relation; the first failure is the one reported.
    for obj in found:
        for tgt in targets:
            rels = relative_position(obj.row, tgt.row, rules.position_threshold)
            if rel not in rels:
                reasons.append(f"expected {name} {rel} target, found "
                               f"{' and '.join(r for r in RELATIONS if r in rels)} target")
                return False
    return True


def evaluate_image(metadata: Mapping[str, Any], detections: Detections, *, filename: str = "",
                   image: np.ndarray | None = None, color_classifier: ColorClassifier | None = None,
                   classnames: Sequence[str] | None = None,
                   rules: GenEvalRules = GenEvalRules()) -> dict[str, Any]:
    """One image's record, with the fields of the official results.jsonl. Colours come from the
    detections when classified already, else from `color_classifier` on masked crops of `image`."""
    kept = keep_detections(detections, metadata["tag"], rules, classnames)

    def colors_of(name: str, found: Sequence[_Kept]) -> Sequence[str]:
        if all(k.color is not None for k in found):
            return [k.color for k in found]
        if image is None or color_classifier is None:
            raise ValueError(f"{filename or 'image'}: colour of {name!r} needed but no colours were "
                             f"given and no image + color_classifier to classify them")
        return _classify(color_classifier, image, found, name, rules)

    correct, reason = evaluate(metadata, kept, colors_of, rules)
    return {
        "filename": filename, "tag": metadata["tag"], "prompt": metadata["prompt"],
        "correct": correct, "reason": reason, "metadata": json.dumps(metadata),
        "details": json.dumps({name: [k.row.tolist() for k in ks] for name, ks in kept.items()}),
    }


def _classify(classifier: ColorClassifier, image: np.ndarray, found: Sequence[_Kept], name: str,
              rules: GenEvalRules) -> list[str]:
    colors = list(classifier.classify([masked_crop(image, k.row, k.mask, rules.bgcolor) for k in found], name))
    if len(colors) != len(found):
        raise ValueError(f"colour classifier returned {len(colors)} colours for {len(found)} {name!r} crops")
    return colors


def score_folder(root: str | Path, detector: Detector, color_classifier: ColorClassifier,
                 classnames: Sequence[str] | None = None,
                 rules: GenEvalRules = GenEvalRules()) -> list[dict[str, Any]]:
    """Run a detector + colour classifier in this process over a sample folder (evaluate_images.py main)."""
    records = []
    for s in list_samples(root):
        image = load_image(s.path)
        records.append(evaluate_image(s.metadata, detector.detect(image), filename=s.filename, image=image,
                                      color_classifier=color_classifier, classnames=classnames, rules=rules))
    return records


# --------------------------------------------------------------------------------------------------
# Raw detector outputs handed over through a file (format in the module docstring)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RawImage:
    filename: str
    metadata: dict[str, Any]
    detections: dict[str, ClassDetections] = field(default_factory=dict)


def export_raw_detections(root: str | Path, detector: Detector, color_classifier: ColorClassifier,
                          path: str | Path, rules: GenEvalRules = GenEvalRules()) -> int:
    """Detect (and classify the colours the rules can ask for) over a sample folder; write the raw file."""
    lines = []
    for s in list_samples(root):
        image = load_image(s.path)
        dets = dict(detector.detect(image))
        colored = {req["class"] for req in s.metadata["include"] if "color" in req}
        kept = keep_detections(dets, s.metadata["tag"], rules)
        entry = {}
        for name, det in dets.items():
            colors: list[str | None] = [None] * len(det.scores)
            if name in colored and name in kept:
                for k, c in zip(kept[name], _classify(color_classifier, image, kept[name], name, rules)):
                    colors[k.index] = c
            entry[name] = {"boxes": det.boxes.tolist(), "scores": det.scores.tolist(), "colors": colors}
        lines.append({"filename": s.filename, "metadata": s.metadata, "detections": entry})
    write_raw_detections(path, lines)
    return len(lines)


def write_raw_detections(path: str | Path, entries: Sequence[Mapping[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(e) + "\n" for e in entries))


def read_raw_detections(path: str | Path) -> Iterator[RawImage]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GenEval raw detections file not found: {path}")
    for lineno, obj in read_jsonl(path):
        where = f"{path}:{lineno}"
        if not isinstance(obj, dict) or not isinstance(obj.get("detections", {}), dict):
            raise InputError(f"{where}: expected an object with 'filename', 'metadata' and 'detections' (an object)")
        for key in ("filename", "metadata", "detections"):
            if key not in obj:
                raise InputError(f"{where}: no {key!r} key")
        dets = {}
        for name, d in obj["detections"].items():
            colors = d.get("colors")
            if colors is not None and (bad := [c for c in colors if c is not None and c not in COLORS]):
                raise ValueError(f"{where}: class {name!r}: unknown colours {bad}; expected {COLORS}")
            if not isinstance(d, dict):
                raise InputError(f"{where}: class {name!r}: detections must be an object")
            try:
                dets[name] = ClassDetections(np.asarray(d["boxes"], np.float32).reshape(-1, 4), d["scores"],
                                             colors=colors)
            except (KeyError, ValueError, TypeError) as e:
                raise InputError(f"{where}: class {name!r}: bad detections ({type(e).__name__}: {e})") from None
        yield RawImage(obj["filename"], _check_metadata(obj["metadata"], where), dets)


def score_raw_detections(path: str | Path, rules: GenEvalRules = GenEvalRules()) -> list[dict[str, Any]]:
    """Score a raw detections file: one official-style record per image."""
    return [evaluate_image(r.metadata, r.detections, filename=r.filename, rules=rules)
            for r in read_raw_detections(path)]


# --------------------------------------------------------------------------------------------------
# Results and summary (summary_scores.py)
# --------------------------------------------------------------------------------------------------
def write_results(path: str | Path, records: Sequence[Mapping[str, Any]]) -> None:
    """results.jsonl, one record per image, as the official evaluator writes it."""
    atomic_write_text(path, "".join(json.dumps(dict(r)) + "\n" for r in records))


def load_results(path: str | Path) -> list[dict[str, Any]]:
    """Read a results.jsonl (ours or the official evaluator's)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GenEval results file not found: {path}")
    records = read_jsonl(path)
    for i, r in records:
        if not isinstance(r, dict) or "tag" not in r or "correct" not in r:
            raise InputError(f"{path}:{i}: a result needs 'tag' and 'correct'")
    return [r for _, r in records]


def summarize(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Fraction correct per tag, and `overall` = the unweighted mean over the tags present."""
    by_tag: dict[str, list[bool]] = {}
    for r in records:
        by_tag.setdefault(r["tag"], []).append(bool(r["correct"]))
    if not by_tag:
        raise ValueError("no GenEval results to summarise")
    out = {tag: float(np.mean(by_tag[tag])) for tag in TAGS if tag in by_tag}
    out.update({tag: float(np.mean(v)) for tag, v in by_tag.items() if tag not in out})
    out["overall"] = float(np.mean(list(out.values())))
    return out
