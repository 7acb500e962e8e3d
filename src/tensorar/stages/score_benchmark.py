"""`tensorar score_benchmark`: GenEval / DPG-Bench scores of a folder of generated images, with our
scorers (tensorar.evaluation.geneval / .dpg: the official scoring rules, reproduced exactly).

    tensorar score_benchmark geneval --images SAMPLES/ --raw RAW.jsonl --out SCORES.json
    tensorar score_benchmark dpg --images GRIDS/ --questions dpg_bench.csv --raw RAW.jsonl --out SCORES.json
    tensorar score_benchmark geneval --images SAMPLES/ --toy-classifier CLS.pt --out SCORES.json   (the toy)

The models behind the scores run where they can: the official detector (Mask2Former + CLIP) and VQA
model (mPLUG) in their own environments (workflow/scripts/, workflow/envs/), which write RAW.jsonl; the
embedded toy's detector (ours, tensorar.toy.detector) runs here when `--toy-classifier` is
given, and its raw file is written beside SCORES.json. SCORES.json holds the paper's table columns
(GenEval: the six tags and overall, fractions; DPG-Bench: global, entity, attribute, relation, other,
overall, percentages) and, for GenEval, the per-image results file beside it. `--bootstrap B` (ours) adds
the overall score's sampling noise: B replicates with the images (GenEval: within each tag) resampled
(tensorar.evaluation.sample_bootstrap.bootstrap_group_means).

Before anything is scored (ours), the image folder is checked against the prompt set
(tensorar.evaluation.prompt_sets: `--prompts`, or the set sample_prompts recorded in the folder): every
prompt's images present, none extra, one image size; the raw file must cover exactly those images.
`--seen-prompts FILE` (GenEval, ours; the toy's geneval/seen_prompts.txt) adds "subsets": the scores of the
prompts whose compositions the training captions held ("seen") and of the held-out rest ("unseen").
SCORES.json records what it covered ("covered": prompts, images per prompt, images, size, the prompt
set's hash).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tensorar.errors import InputError, run_stage
from tensorar.evaluation import dpg, geneval, prompt_sets
from tensorar.evaluation.options import BootstrapOptions, ScoringOptions
from tensorar.evaluation.sample_bootstrap import bootstrap_group_means
from tensorar.options import add_arguments, from_arguments
from tensorar.fileio import atomic_write_json, sha256_file


def seen_and_unseen(records: list[dict], seen_file: Path) -> dict:
    """GenEval scores of the prompts listed in `seen_file` (their compositions were in the training
    captions) and of the others (held out), each summarised as the whole set is."""
    if not seen_file.is_file():
        raise FileNotFoundError(f"seen-prompts file not found: {seen_file}")
    seen = {line.strip() for line in seen_file.read_text().splitlines() if line.strip()}
    unknown = seen - {r["prompt"] for r in records}
    if unknown:
        raise InputError(f"{seen_file}: prompts not in the scored set: {sorted(unknown)[:3]}")
    out = {"seen_prompts": len(seen)}
    for name, part in (("seen", [r for r in records if r["prompt"] in seen]),
                       ("unseen", [r for r in records if r["prompt"] not in seen])):
        if part:
            out[name] = {"scores": geneval.summarize(part), "num_images": len(part)}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tensorar score_benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("benchmark", choices=("geneval", "dpg"))
    parser.add_argument("--images", required=True, help="the generated images (tensorar sample_prompts' layout)")
    parser.add_argument("--prompts", default=None, help="the prompt file the images were generated for (GenEval "
                        "metadata JSONL, DPG-Bench prompts folder); default: the set recorded in --images")
    parser.add_argument("--questions", help="dpg: dpg_bench.csv (from github.com/TencentQQGYLab/ELLA)")
    parser.add_argument("--raw", help="raw detections / answers written by the official model's runner")
    parser.add_argument("--toy-classifier", help="the toy: run our toy detector with this CLS.pt instead")
    parser.add_argument("--seen-prompts", help="geneval, ours: a file of prompts (one a line) whose compositions "
                        "the training captions held; SCORES.json adds the scores of them and of the rest apart")
    add_arguments(parser.add_argument_group("scoring (ScoringOptions)"), ScoringOptions)
    add_arguments(parser.add_argument_group("the overall score's bootstrap (BootstrapOptions)"), BootstrapOptions)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    boot = from_arguments(parser, args, BootstrapOptions)
    scoring = from_arguments(parser, args, ScoringOptions)
    if (args.raw is None) == (args.toy_classifier is None):
        parser.error("give exactly one of --raw (an official model's outputs) and --toy-classifier (the toy)")
    if args.benchmark == "dpg" and not args.questions:
        parser.error("dpg needs --questions dpg_bench.csv")
    out = Path(args.out)
    images = Path(args.images)
    expected = prompt_sets.expected_set(images, args.benchmark, args.prompts, scoring.images_per_prompt)
    covered = prompt_sets.check_folder(images, expected)
    raw = Path(args.raw) if args.raw else out.with_name(out.stem + ".raw.jsonl")
    if args.toy_classifier:
        from tensorar.toy.detector import (
            ToyDetector,
            write_dpg_answers,
            write_geneval_detections,
        )

        detector = ToyDetector.from_checkpoint(args.toy_classifier)
        if args.benchmark == "geneval":
            write_geneval_detections(args.images, detector, raw)
        else:
            write_dpg_answers(args.questions, args.images, detector, raw)
    if not raw.is_file():
        raise FileNotFoundError(f"raw model outputs not found: {raw}")
    result = {"benchmark": args.benchmark, "images": str(args.images), "raw": str(raw), "raw_sha256": sha256_file(raw),
              "detector": "toy (ours)" if args.toy_classifier else "official", "covered": covered}
    if args.benchmark == "geneval":
        records = geneval.score_raw_detections(raw)
        prompt_sets.check_covered("detections", {r["filename"] for r in records},
                                  prompt_sets.expected_files(expected), raw)
        if len(records) != covered["images"]:
            raise InputError(f"{raw}: {len(records)} detection records for {covered['images']} images (repeats)")
        geneval.write_results(out.with_name(out.stem + ".results.jsonl"), records)
        result.update(scores=geneval.summarize(records), num_images=len(records))
        if args.seen_prompts:
            result["subsets"] = seen_and_unseen(records, Path(args.seen_prompts))
        groups = [[float(r["correct"]) for r in records if r["tag"] == tag] for tag in result["scores"] if
                  tag != "overall"]
    else:
        scored = dpg.score_answers_file(args.questions, raw, official_quirks=scoring.official_quirks)
        prompt_sets.check_covered("answered items", set(scored.image_scores) | _failed_items(scored),
                                  prompt_sets.expected_files(expected), raw)
        result.update(scores=scored.table_row(), num_images=len(scored.image_scores), failed=scored.failed,
                      official_quirks=scoring.official_quirks)
        groups = [[100.0 * v for v in scored.image_scores.values()]]  # DPG-Bench: a percentage per prompt
    if boot.bootstrap:
        replicates = bootstrap_group_means(groups, boot.bootstrap, np.random.default_rng(boot.bootstrap_seed))
        result["overall_bootstrap"] = {"replicates": replicates.tolist(), "seed": boot.bootstrap_seed}
    atomic_write_json(out, result)
    print(", ".join(f"{k} {v:.4g}" for k, v in result["scores"].items()))


def _failed_items(scored) -> set[str]:
    """Items whose scoring failed (kept in SCORES.json["failed"] by file name <item_id>.png)."""
    return {Path(name).stem for name in scored.failed}


if __name__ == "__main__":
    run_stage(main)
