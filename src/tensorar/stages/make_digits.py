"""`tensorar make_digits`: materialise scikit-learn's bundled digits as an ImageFolder (the embedded toy
dataset; what it holds and how it is made: tensorar/toy/digits.py).

    tensorar make_digits --out DIR [--image-size 16] [--val-fraction 0.2] [--seed 0] [--overwrite]
"""
from __future__ import annotations

import argparse

from tensorar.toy.digits import build
from tensorar.errors import run_stage
from tensorar.options import add_arguments, from_arguments
from tensorar.toy.options import DigitsOptions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="dataset directory DIR to create")
    add_arguments(parser.add_argument_group("the dataset (DigitsOptions)"), DigitsOptions)
    parser.add_argument("--overwrite", action="store_true", help="replace a DIR holding anything else")
    args = parser.parse_args(argv)
    opts = from_arguments(parser, args, DigitsOptions)
    try:
        build(args.out, opts.image_size, opts.val_fraction, opts.seed, overwrite=args.overwrite)
    except (FileExistsError, ValueError) as e:
        parser.exit(2, f"make_digits: error: {e}\n")


if __name__ == "__main__":
    run_stage(main)
