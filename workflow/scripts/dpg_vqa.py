"""mPLUG-large VQA over a folder of DPG-Bench 2x2 grids -> the raw answers file our scorer reads.

Runs in its own environment (workflow/envs/dpg.yaml: Python 3.8, modelscope 1.13 + its multi-modal stack),
where `tensorar` is not installed, so it imports nothing from it. `tensorar.evaluation.dpg` scores what
this writes (`score_answers_file`); this script only asks the questions.

Mirrors how TencentQQGYLab/ELLA @ 3c228f1, dpg_bench/compute_dpg_bench.py, runs its model:
  MPLUG                 `modelscope.pipelines.pipeline(Tasks.visual_question_answering, model=<mPLUG>,
                        device=...)`; an answer is `pipeline({'image': crop, 'question': q})['text']`.
  compute_dpg_one_sample  `Image.open(<item_id>.png)` (no conversion: the pipeline's preprocessor converts
                        to RGB), PIL crops TL, TR, BL, BR of `resolution` px in that order, and every
                        question of the item asked of every crop, in CSV order.
The model is read from a local directory (ELLA names the ModelScope id and lets modelscope download it).
Every question of an item is asked, the first CSV row's included (upstream's loader skips it; our scorer
does too unless `official_quirks=False`), each distinct question text once per crop. A grid whose item has
no question gets empty answers, so the scorer sees it and drops it (or, corrected, rejects it) as upstream
drops it. Upstream runs 8 `accelerate` processes; `--mixed_precision fp16` there never reaches the pipeline
(it wraps only the empty MPLUG module's forward), so this single process runs the pipeline as upstream does.

Trusted code: modelscope builds mPLUG from the model folder's configuration and reads its weights with full
unpickling (`torch.load` of torch 1.x, which can execute code in the file); the folder's Python
configuration is code too. Use only the folder downloaded from ModelScope (workflow/envs/README.md).

Output: JSON Lines, one object per (grid, crop), grids in sorted name order (format: tensorar/evaluation/dpg.py):
    {"item_id": "partiprompts12", "crop": 0, "answers": {"Is there a dog?": "yes", ...}}
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

from PIL import Image

MODEL_ID = "damo/mplug_visual-question-answering_coco_large_en"
CSV_SOURCE = "dpg_bench/dpg_bench.csv in https://github.com/TencentQQGYLab/ELLA"
N_CROPS = 4  # dist_eval.sh: PIC_NUM=4


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", required=True, type=Path, help="folder of <item_id>.png 2x2 grids")
    p.add_argument("--questions", required=True, type=Path, help="dpg_bench.csv")
    p.add_argument("--out", required=True, type=Path, help="raw answers file to write (JSON Lines)")
    p.add_argument("--model-dir", required=True, type=Path, help=f"local copy of ModelScope's {MODEL_ID}")
    p.add_argument("--resolution", type=int, default=512, help="side of one sample in the grid, px")
    p.add_argument("--device", default="cuda", help="modelscope device: cuda, cuda:N, gpu or cpu")
    return p.parse_args(argv)


def fail(message: str) -> None:
    sys.exit(f"dpg_vqa: {message}")


def load_questions(path: Path) -> dict:
    """{item_id: [question, ...]}: every row of dpg_bench.csv, distinct texts in CSV order."""
    if not path.is_file():
        fail(f"question file not found: {path}\n  get {CSV_SOURCE}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("item_id", "question_natural_language") if c not in (reader.fieldnames or [])]
        if missing:
            fail(f"{path}: missing columns {missing}")
        out = {}
        for row in reader:
            questions = out.setdefault(row["item_id"], [])
            if row["question_natural_language"] not in questions:
                questions.append(row["question_natural_language"])
    return out


def crop_boxes(resolution: int) -> list:
    r = resolution
    return [(0, 0, r, r), (r, 0, 2 * r, r), (0, r, r, 2 * r), (r, r, 2 * r, 2 * r)]  # TL, TR, BL, BR


def list_grids(folder: Path, resolution: int) -> list:
    if not folder.is_dir():
        fail(f"image folder not found: {folder}")
    grids = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(".png"))
    if not grids:
        fail(f"no <item_id>.png grids in {folder}")
    for path in grids:
        with Image.open(path) as im:
            if im.size != (2 * resolution, 2 * resolution):
                fail(f"{path} is {im.size[0]}x{im.size[1]}, not a 2x2 grid of {resolution} px samples "
                     f"({2 * resolution}x{2 * resolution}); check --resolution")
    return grids


class MPlugVQA:
    """The MPLUG wrapper of compute_dpg_bench.py, loading from a local directory."""

    def __init__(self, model_dir: Path, device: str):
        from modelscope.pipelines import pipeline
        from modelscope.utils.constant import Tasks
        self.pipeline = pipeline(Tasks.visual_question_answering, model=str(model_dir), device=device)

    def answer(self, image: Image.Image, question: str) -> str:
        return self.pipeline({"image": image, "question": question})["text"]


def answer_grid(vqa: MPlugVQA, path: Path, questions: list, resolution: int) -> list:
    """[{question: answer}] per crop, TL, TR, BL, BR."""
    with Image.open(path) as image:  # not converted, as upstream: the pipeline converts to RGB
        crops = [image.crop(box) for box in crop_boxes(resolution)[:N_CROPS]]
    return [{q: vqa.answer(crop, q) for q in questions} for crop in crops]


def main(argv=None) -> None:
    args = parse_args(argv)
    if not (args.model_dir / "configuration.json").is_file():
        fail(f"mPLUG model not found: {args.model_dir} (no configuration.json)\n  get ModelScope's {MODEL_ID}, "
             f"e.g. `python -c \"from modelscope import snapshot_download; print(snapshot_download('{MODEL_ID}'))\"` "
             f"prints the folder to pass")
    if args.resolution <= 0:
        fail(f"--resolution must be positive, got {args.resolution}")
    questions = load_questions(args.questions)
    grids = list_grids(args.images, args.resolution)
    if unasked := [p.name for p in grids if p.name[: -len(".png")] not in questions]:
        print(f"dpg_vqa: warning: {len(unasked)} grids have no questions in {args.questions}: {unasked[:5]}",
              file=sys.stderr)
    vqa = MPlugVQA(args.model_dir, args.device)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    start = time.time()
    with open(tmp, "w") as f:  # renamed when whole, so a killed run leaves no complete-looking file
        for n, path in enumerate(grids, 1):
            item = path.name[: -len(".png")]
            for crop, answers in enumerate(answer_grid(vqa, path, questions.get(item, []), args.resolution)):
                f.write(json.dumps({"item_id": item, "crop": crop, "answers": answers}) + "\n")
            if n % 50 == 0 or n == len(grids):
                print(f"dpg_vqa: {n}/{len(grids)} grids, {time.time() - start:.0f}s", file=sys.stderr)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
