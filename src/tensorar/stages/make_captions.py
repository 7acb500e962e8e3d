"""`tensorar make_captions`: the embedded toy's text-to-image data and benchmark prompts (ours; what the
canvases and captions are: tensorar/toy/captioned_digits.py; the prompt sets: tensorar/toy/benchmarks.py).

    tensorar make_captions --out DIR [--num-train 6000] [--num-val 600] [--seed 0]

Writes DIR/train and DIR/val (captioned canvases in the JSONL layout: images/ + captions.jsonl), the toy
GenEval prompt set DIR/geneval/evaluation_metadata.jsonl (its compositions held out of the captions but
for a seen fraction, listed in DIR/geneval/seen_prompts.txt) and the toy DPG-Bench set DIR/dpg/
(dpg_bench.csv + prompts/), all deterministic; a rerun with the same settings is a no-op. The toy
benchmarks are ours and are never compared with the paper's GenEval / DPG-Bench numbers.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tensorar.toy import benchmarks, captioned_digits
from tensorar.distributed import get_logger
from tensorar.errors import run_stage
from tensorar.options import add_arguments, from_arguments
from tensorar.toy.options import CaptionsOptions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tensorar make_captions", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    add_arguments(parser.add_argument_group("the canvases (CaptionsOptions)"), CaptionsOptions)
    parser.add_argument("--overwrite", action="store_true", help="replace folders holding something else")
    args = parser.parse_args(argv)
    opts = from_arguments(parser, args, CaptionsOptions)
    out = Path(args.out)
    log = get_logger("make_captions")
    prompts = benchmarks.toy_geneval_metadata(opts.seed)
    seen = benchmarks.seen_prompts(prompts, opts.seed, opts.seen_fraction)
    held_out = benchmarks.held_out(prompts, seen)
    for split, n, seed in (("train", opts.num_train, opts.seed), ("val", opts.num_val, opts.seed + 1)):
        captioned_digits.build(out / split, n, seed=seed, split=split, held_out=held_out, overwrite=args.overwrite)
    benchmarks.write_toy_geneval(out / "geneval", seed=opts.seed, seen=seen)
    benchmarks.write_toy_dpg(out / "dpg", seed=opts.seed)
    log.info(f"captioned canvases ({opts.num_train} train, {opts.num_val} val) and toy prompt sets in {out}")


if __name__ == "__main__":
    run_stage(main)
