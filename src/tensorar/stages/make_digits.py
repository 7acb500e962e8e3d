"""`tensorar make_digits`: materialise scikit-learn's bundled digits as an ImageFolder (the embedded toy
dataset; what it holds and how it is made: tensorar/toy/digits.py).

    tensorar make_digits --out DIR [--image-size 16] [--val-fraction 0.2] [--seed 0] [--overwrite]
"""
from __future__ import annotations

import argparse

from tensorar.toy.digits import build
from tensorar.errors import run_stage


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="dataset directory DIR to create")
    parser.add_argument("--image-size", type=int, default=16, help="output side, a multiple of 8 (default 16)")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0, help="seed of the stratified split")
    parser.add_argument("--overwrite", action="store_true", help="replace a DIR holding anything else")
    args = parser.parse_args(argv)
    try:
        build(args.out, args.image_size, args.val_fraction, args.seed, overwrite=args.overwrite)
    except (FileExistsError, ValueError) as e:
        parser.exit(2, f"make_digits: error: {e}\n")


if __name__ == "__main__":
    run_stage(main)
