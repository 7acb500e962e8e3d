"""`tensorar <stage> [args]`: the same as `python -m tensorar <stage> [args]` (__main__.py); the stages
live in tensorar/stages/, one module each."""
from __future__ import annotations

import importlib
import sys

from tensorar.errors import run_stage

COMMANDS = {
    "make_digits": "materialise the bundled toy dataset (scikit-learn digits) as an ImageFolder",
    "make_captions": "the toy's captioned canvases and its GenEval / DPG-Bench prompt sets (ours)",
    "train_tokenizer": "train a small image tokenizer (VQ or LFQ; the toy)",
    "extract_codes": "images -> VQ token grids (sharded .npy + manifest)",
    "encode_captions": "captions of text-image codes -> the conditions (T5 / Janus / toy features)",
    "train": "train a base AR model, the fine-tune control, or a TensorAR model (DDP)",
    "train_classifier": "train the toy feature network used in place of Inception",
    "make_reference": "build an ADM-style reference batch (.npz) from an ImageFolder",
    "sample": "generate N images to an ADM-format .npz (DDP, resumable)",
    "sample_prompts": "generate images for a prompt file (GenEval / DPG-Bench layouts; resumable)",
    "time_sampling": "latency / throughput of a sampler in a job that has the machine to itself (JSON)",
    "evaluate": "ADM-compatible FID / sFID / IS / precision / recall",
    "score_benchmark": "GenEval / DPG-Bench scores from a model's raw outputs (or the toy detector)",
    "diagnose": "draft-copying diagnostics for a TensorAR checkpoint",
    "tables": "assemble result tables and figures",
    "resources": "the memory plan: predicted GPU / host memory and strategy of every planned job (ours)",
}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {doc}" for name, doc in COMMANDS.items()]
        print("usage: tensorar <command> [args]\n\ncommands:\n" + "\n".join(lines))
        if argv and argv[0] not in {"-h", "--help"}:
            sys.exit(f"unknown command: {argv[0]!r}")
        return
    module = importlib.import_module(f"tensorar.stages.{argv[0]}")
    sys.argv = [f"tensorar {argv[0]}", *argv[1:]]
    run_stage(module.main)


if __name__ == "__main__":
    main()
