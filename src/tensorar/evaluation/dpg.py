"""DPG-Bench (Hu et al., 2024, ELLA) scoring, re-implemented in numpy, plus its 2x2 image grids.

Mirrors TencentQQGYLab/ELLA @ 3c228f1dc6c4d3cad0a47493816151a419f14db3, dpg_bench/compute_dpg_bench.py:
`load_questions` is its prepare_dpg_data, `score` its main() + compute_dpg_one_sample, `crop_grid` its
crop tuples and `format_summary` the text it prints. The VQA model (mPLUG-large via ModelScope) is NOT
here: answers come from a callable, from a `VQAModel` run on the grids in this process, or from a file of
raw answers written in another environment (format below). `tests/test_dpg.py` reproduces the official
main() on a synthetic CSV (spec section 5).

Scoring: a question scores 1 when its answer is 'yes'; a question whose parent (id != 0) scores 0 is set
to 0 (dependencies applied in CSV order, so zeros cascade); crop score = mean over questions; image score =
mean over crops; DPG-Bench score = 100 x mean over images. L2 category = the tuple's text before '(',
L1 = the L2 text before '-'; category scores = 100 x mean of the RAW answers (before the dependency zeroing).

`official_quirks=True` (default) reproduces the official script, bugs included. `False` corrects them:
    official (True)                                      corrected (False)
 1. CSV data row 0 is skipped (`if i == 0: continue`)   every row is read
 2. a later, non-contiguous block of an item's rows     the blocks are merged; a repeated proposition id
    replaces the earlier block                          raises
 3. a parent id that is not a question of the item      raises when the CSV is loaded
    raises KeyError while scoring: image dropped
 4. every listed file is scored (non-images fail and    only `*.png` files, item id = name minus ".png"
    are dropped), item id = name before the first '.'
 5. any exception drops the image ("Failed filename")   exceptions propagate
 6. only the exact, case-sensitive 'yes' counts         answer.strip().lower() == 'yes'
 7. dependencies applied once, in CSV order             applied until nothing changes (any ancestor 'no')
 8. category scores from the LAST crop's answers only   from the answers of all crops
Not reproduced: the official lists files in `os.listdir` order split over 8 processes; we score in sorted
order, which can change the last bits of the final mean (never the per-image scores).

Raw answers file (JSON Lines, one object per (image, crop); written by `write_answers`):
    {"item_id": "partiprompts12", "crop": 0, "answers": {"Is there a dog?": "yes", ...}}
`crop` indexes the grid as the official crops it: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right.
Answers are keyed by the question text, verbatim (as the VQA model was asked). The set of item ids in
the file stands in for the image folder's listing. `answers_from_detail_file` also reads the official
`*_detail.txt` log (`path, (x0, y0, x1, y1), question, answer` per line).
"""
from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from tensorar.errors import InputError
from tensorar.fileio import atomic_path, atomic_write_text, image_errors, read_jsonl

CSV_COLUMNS = ("item_id", "text", "keywords", "proposition_id", "dependency", "category_broad",
               "category_detailed", "tuple", "question_natural_language")
TABLE_COLUMNS = ("global", "entity", "attribute", "relation", "other", "overall")  # paper Table 4
CSV_SOURCE = "dpg_bench/dpg_bench.csv from https://github.com/TencentQQGYLab/ELLA"

AnswerFn = Callable[[str, int, str], str]  # (item_id, crop index, question) -> the VQA model's answer


class VQAModel(Protocol):
    """A visual question answering model (the official one: mPLUG-large, ModelScope)."""
    def answer(self, image: np.ndarray, question: str) -> str:  # image: (H, W, 3) uint8
        ...


@dataclass
class ItemQuestions:
    """One prompt's questions, keyed by proposition id, in CSV order."""
    tuples: dict[int, str] = field(default_factory=dict)
    dependencies: dict[int, list[int]] = field(default_factory=dict)  # parent ids; 0 = none
    questions: dict[int, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Prompts and questions
# --------------------------------------------------------------------------------------------------
def load_prompts(folder: str | Path) -> dict[str, str]:
    """dpg_bench/prompts/<item_id>.txt -> {item_id: prompt}, sorted by item id."""
    folder = Path(folder)
    files = sorted(folder.glob("*.txt")) if folder.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no DPG-Bench prompts (<item_id>.txt) found in {folder}")
    prompts = {}
    for p in files:
        try:
            prompts[p.stem] = p.read_text(encoding="utf-8").strip()
        except UnicodeDecodeError as err:
            raise InputError(f"{p}: not UTF-8 text (byte {err.start}: {err.reason})") from None
        if not prompts[p.stem]:
            raise InputError(f"{p} is empty: every DPG-Bench item needs its prompt")
    return prompts


def load_questions(csv_path: str | Path, official_quirks: bool = True) -> dict[str, ItemQuestions]:
    """dpg_bench.csv -> {item_id: ItemQuestions} (the official prepare_dpg_data)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"DPG-Bench question file not found: {csv_path}. It is not shipped with "
                                f"tensorar; get {CSV_SOURCE} and pass its path.")
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        if missing := [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]:
            raise ValueError(f"{csv_path}: missing columns {missing}")
        rows = list(reader)
    out: dict[str, ItemQuestions] = {}
    previous = None
    for i, row in enumerate(rows):
        if official_quirks and i == 0:
            continue  # quirk 1: the official loop skips the first data row
        where = f"{csv_path}: data row {i + 1} (item {row['item_id']!r})"
        try:
            qid = int(row["proposition_id"])
            deps = [int(d.strip()) for d in row["dependency"].split(",")]
        except ValueError as e:
            raise ValueError(f"{where}: bad proposition_id / dependency ({e})") from None
        item = row["item_id"]
        if item != previous and (official_quirks or item not in out):
            out[item] = ItemQuestions()  # quirk 2: a new block replaces an earlier one
        q = out[item]
        if not official_quirks and qid in q.questions:
            raise ValueError(f"{where}: proposition_id {qid} repeated")
        q.tuples[qid], q.dependencies[qid], q.questions[qid] = row["tuple"], deps, row["question_natural_language"]
        previous = item
    if not official_quirks:
        for item, q in out.items():
            if bad := sorted({d for ds in q.dependencies.values() for d in ds if d != 0} - set(q.questions)):
                raise ValueError(f"{csv_path}: item {item!r} depends on propositions {bad} it does not have")
    return out


# --------------------------------------------------------------------------------------------------
# 2x2 grids
# --------------------------------------------------------------------------------------------------
def make_grid(images: Sequence[np.ndarray]) -> np.ndarray:
    """4 (R, R, 3) uint8 samples -> (2R, 2R, 3): top-left, top-right, bottom-left, bottom-right."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] != 4 or images.shape[3] != 3:
        raise ValueError(f"expected 4 (R, R, 3) uint8 images, got {images.dtype} {images.shape}")
    top = np.concatenate([images[0], images[1]], axis=1)  # (R, 2R, 3)
    bottom = np.concatenate([images[2], images[3]], axis=1)
    return np.concatenate([top, bottom], axis=0)  # (2R, 2R, 3)


def write_grid(folder: str | Path, item_id: str, images: Sequence[np.ndarray]) -> Path:
    """Save <folder>/<item_id>.png, the image the official evaluator expects for that prompt."""
    path = Path(folder) / f"{item_id}.png"
    with atomic_path(path) as tmp:
        Image.fromarray(make_grid(images)).save(tmp, format="PNG")
    return path


def crop_grid(grid: np.ndarray, resolution: int, pic_num: int = 4) -> list[np.ndarray]:
    """The official crops of a grid, in order TL, TR, BL, BR (first `pic_num`). As PIL's crop, parts
    outside the image are zeros."""
    if not 1 <= pic_num <= 4:
        raise ValueError(f"pic_num must be 1..4, got {pic_num}")
    out = []
    for k in range(pic_num):
        y0, x0 = (k // 2) * resolution, (k % 2) * resolution
        crop = np.zeros((resolution, resolution) + grid.shape[2:], dtype=grid.dtype)
        part = grid[y0: y0 + resolution, x0: x0 + resolution]
        crop[: part.shape[0], : part.shape[1]] = part
        out.append(crop)
    return out


def read_grid(path: str | Path) -> np.ndarray:
    with image_errors(path), Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def vqa_answers(image_root: str | Path, model: VQAModel, resolution: int, pic_num: int = 4) -> AnswerFn:
    """Answer questions by running `model` on the crops of <image_root>/<item_id>.png (kept per item)."""
    cache: dict[str, list[np.ndarray]] = {}

    def answer(item_id: str, crop: int, question: str) -> str:
        if item_id not in cache:
            cache.clear()  # one image at a time: the scorer asks all of an item's questions together
            cache[item_id] = crop_grid(read_grid(Path(image_root) / f"{item_id}.png"), resolution, pic_num)
        return model.answer(cache[item_id][crop], question)

    return answer


# --------------------------------------------------------------------------------------------------
# Raw answer files
# --------------------------------------------------------------------------------------------------
def write_answers(path: str | Path, answers: Mapping[tuple[str, int], Mapping[str, str]]) -> None:
    """{(item_id, crop): {question: answer}} -> the raw answers file (module docstring)."""
    lines = [json.dumps({"item_id": item, "crop": crop, "answers": dict(qa)})
             for (item, crop), qa in answers.items()]
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def read_answers(path: str | Path) -> dict[tuple[str, int], dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DPG-Bench answers file not found: {path}")
    out: dict[tuple[str, int], dict[str, str]] = {}
    for lineno, obj in read_jsonl(path):
        if not isinstance(obj, dict) or {"item_id", "crop", "answers"} - set(obj) or \
                not isinstance(obj["answers"], dict) or not isinstance(obj["crop"], int):
            raise InputError(f"{path}:{lineno}: need keys 'item_id', 'crop' (an integer), 'answers' (an object)")
        key = (str(obj["item_id"]), obj["crop"])
        if key in out:
            raise ValueError(f"{path}:{lineno}: answers for item {key[0]!r} crop {key[1]} given twice")
        out[key] = {str(q): str(a) for q, a in obj["answers"].items()}
    return out


_DETAIL_LINE = re.compile(r"(?P<path>.*?), \((?P<x0>\d+), (?P<y0>\d+), \d+, \d+\), (?P<q>.*), (?P<a>.*)")


def answers_from_detail_file(path: str | Path) -> dict[tuple[str, int], dict[str, str]]:
    """The official `dpg-bench_*_results_detail.txt` -> the same mapping as `read_answers`. Answers are
    taken as the text after the last ', ' (mPLUG's answers are short words without commas)."""
    out: dict[tuple[str, int], dict[str, str]] = defaultdict(dict)
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not (m := _DETAIL_LINE.fullmatch(line)):
            raise ValueError(f"{path}:{lineno}: not an official detail line: {line!r}")
        crop = 2 * (int(m["y0"]) > 0) + (int(m["x0"]) > 0)
        out[(Path(m["path"]).name.split(".")[0], crop)][m["q"]] = m["a"]
    return dict(out)


def answers_lookup(answers: Mapping[tuple[str, int], Mapping[str, str]]) -> AnswerFn:
    """An AnswerFn over a raw answers mapping; a missing answer raises KeyError naming it."""
    def answer(item_id: str, crop: int, question: str) -> str:
        try:
            return answers[(item_id, crop)][question]
        except KeyError:
            raise KeyError(f"no answer for item {item_id!r} crop {crop} question {question!r}") from None
    return answer


# --------------------------------------------------------------------------------------------------
# Scoring (compute_dpg_one_sample + main)
# --------------------------------------------------------------------------------------------------
@dataclass
class DPGResult:
    score: float  # the DPG-Bench score: 100 x mean over scored images
    l1: dict[str, float]  # 100 x mean raw answer, by L1 category ("entity", ...), first-seen order
    l2: dict[str, float]  # ... by L2 category ("entity - whole", ...), sorted
    crop_scores: dict[str, list[float]]  # item id -> per-crop scores
    image_scores: dict[str, float]  # item id -> mean over its crops
    failed: dict[str, str] = field(default_factory=dict)  # file name -> error (official: dropped)

    def table_row(self) -> dict[str, float]:
        """Paper Table 4 columns; nan for a category without questions."""
        return {c: self.score if c == "overall" else self.l1.get(c, float("nan")) for c in TABLE_COLUMNS}


def score(questions: Mapping[str, ItemQuestions], filenames: Iterable[str], answer_fn: AnswerFn, *,
          pic_num: int = 4, official_quirks: bool = True) -> DPGResult:
    """Score the images named `filenames` (the image folder's listing) with answers from `answer_fn`."""
    if not 1 <= pic_num <= 4:
        raise ValueError(f"pic_num must be 1..4, got {pic_num}")
    crop_scores: dict[str, list[float]] = {}
    image_means: list[float] = []  # per scored file: officially two files of one item both count
    category_scores: dict[str, list[float]] = defaultdict(list)  # L2 category -> raw 0/1 scores
    failed: dict[str, str] = {}
    for name in sorted(filenames):
        if not official_quirks and not name.endswith(".png"):
            continue
        item = name.split(".")[0] if official_quirks else name[: -len(".png")]
        try:
            if item not in questions:
                raise KeyError(f"no questions for item {item!r} (file {name})")
            crops, raw = _score_item(questions[item], item, answer_fn, pic_num, official_quirks)
        except Exception as e:  # quirk 5: the official loop drops the image on any error
            if not official_quirks:
                raise
            failed[name] = f"{type(e).__name__}: {e}"
            continue
        crop_scores[item] = crops
        image_means.append(sum(crops) / len(crops))
        for qid, tup in questions[item].tuples.items():
            category_scores[tup.split("(")[0].strip()].extend(raw[qid])
    if not image_means:
        raise ValueError(f"no DPG-Bench image could be scored; failures: {failed}")
    l1: dict[str, list[float]] = defaultdict(list)
    for cat, vals in category_scores.items():
        l1[cat.split("-")[0].strip()].extend(vals)
    return DPGResult(
        score=float(np.mean(image_means) * 100),
        l1={c: float(np.mean(v) * 100) for c, v in l1.items()},
        l2={c: float(np.mean(category_scores[c]) * 100) for c in sorted(category_scores)},
        crop_scores=crop_scores, image_scores={item: sum(s) / len(s) for item, s in crop_scores.items()},
        failed=failed,
    )


def _score_item(q: ItemQuestions, item: str, answer_fn: AnswerFn, pic_num: int,
                official_quirks: bool) -> tuple[list[float], dict[int, list[float]]]:
    """Per-crop scores, and per question the raw 0/1 scores that feed the category scores."""
    crop_scores = []
    raw: dict[int, list[float]] = {qid: [] for qid in q.questions}
    for crop in range(pic_num):
        scores = {}
        for qid, question in q.questions.items():
            answer = answer_fn(item, crop, question)
            scores[qid] = float(answer == "yes" if official_quirks else answer.strip().lower() == "yes")
        for qid, s in scores.items():
            # quirk 8: the official keeps the raw answers of the last crop only
            raw[qid] = [s] if official_quirks else raw[qid] + [s]
        _apply_dependencies(scores, q.dependencies, cascade_to_fixpoint=not official_quirks)
        crop_scores.append(sum(scores.values()) / len(scores))
    return crop_scores, raw


def _apply_dependencies(scores: dict[int, float], dependencies: Mapping[int, Sequence[int]],
                        cascade_to_fixpoint: bool) -> None:
    # A question about an attribute of an entity the VQA model did not find scores 0 (DSG's rule).
    # In CSV order a parent's zero reaches the children listed after it; the corrected mode repeats
    # the pass so a zero also reaches children listed before their parent.
    while True:
        changed = False
        for qid, parents in dependencies.items():
            # The parents are looked up even when the child already scored 0, as the official loop does:
            # a parent the item lacks raises KeyError there (quirk 3: the image is dropped).
            if any(p != 0 and scores[p] == 0 for p in parents) and scores[qid] != 0:
                scores[qid], changed = 0.0, True
        if not (changed and cascade_to_fixpoint):
            return


def score_answers_file(csv_path: str | Path, answers_path: str | Path, *, pic_num: int = 4,
                       official_quirks: bool = True) -> DPGResult:
    """Score a raw answers file (the VQA model ran elsewhere) against dpg_bench.csv."""
    answers = read_answers(answers_path)
    filenames = {f"{item}.png" for item, _ in answers}
    return score(load_questions(csv_path, official_quirks), filenames, answers_lookup(answers),
                 pic_num=pic_num, official_quirks=official_quirks)


def score_folder(csv_path: str | Path, image_root: str | Path, model: VQAModel, resolution: int, *,
                 pic_num: int = 4, official_quirks: bool = True) -> DPGResult:
    """Run a VQA model in this process over a folder of <item_id>.png grids (the official main())."""
    image_root = Path(image_root)
    if not image_root.is_dir():
        raise FileNotFoundError(f"DPG-Bench image folder not found: {image_root}")
    filenames = [p.name for p in image_root.iterdir()]  # everything, as os.listdir (quirk 4)
    return score(load_questions(csv_path, official_quirks), filenames,
                 vqa_answers(image_root, model, resolution, pic_num),
                 pic_num=pic_num, official_quirks=official_quirks)


def format_summary(result: DPGResult, model_id: str, image_path: str, res_path: str) -> str:
    """The summary the official script prints and appends to its results file."""
    lines = [f"Model: {model_id}", "L1 category scores:"]
    lines += [f"\t{c}: {np.float64(v)}" for c, v in result.l1.items()]
    lines += ["L2 category scores:"] + [f"\t{c}: {np.float64(v)}" for c, v in result.l2.items()]
    lines += [f"Image path: {image_path}", f"Save results to: {res_path}",
              f"DPG-Bench score: {np.float64(result.score)}"]
    return "\n".join(lines) + "\n"
