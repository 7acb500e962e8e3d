"""Build an ADM-style reference batch from an ImageFolder.

    python -m tensorar make_reference --data DIR/val --out REF.npz --image-size 256 [--max-images N]

Images go through ADM's center crop (the same pre-processing the generators are trained on) and are
stored as `arr_0` uint8 (N, S, S, 3) with their class indices in `labels` (int64), in ImageFolder order
(sorted class folders, sorted files). `--max-images N` keeps N images evenly spaced over that order, so
every class stays represented.
"""
from __future__ import annotations

import argparse

import numpy as np
from tqdm.auto import tqdm

from tensorar.data.imagefolder import center_crop_arr, image_folder
from tensorar.distributed import get_logger
from tensorar.errors import run_stage
from tensorar.fileio import atomic_save_npz
from tensorar.evaluation.options import ReferenceOptions
from tensorar.options import add_arguments, from_arguments


def make_reference(data: str, image_size: int, max_images: int | None = None,
                   progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, S, S, 3), labels int64 (N,)) of an ImageFolder."""
    dataset = image_folder(data)  # PIL RGB images, class index = sorted folder position
    if len(dataset) == 0:
        raise ValueError(f"no images in {data}")
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    indices = np.linspace(0, len(dataset) - 1, count).round().astype(np.int64)  # (N,) evenly spaced, sorted
    images = np.stack([
        np.asarray(center_crop_arr(dataset[int(i)][0], image_size))
        for i in tqdm(indices, desc="reference images", disable=not progress)
    ])  # (N, S, S, 3)
    labels = np.asarray(dataset.targets, dtype=np.int64)[indices]  # (N,)
    return images, labels


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="ImageFolder root: DIR/<class>/<image>")
    parser.add_argument("--out", required=True, help="REF.npz")
    add_arguments(parser.add_argument_group("the batch (ReferenceOptions)"), ReferenceOptions)
    args = parser.parse_args(argv)
    opts = from_arguments(parser, args, ReferenceOptions)

    logger = get_logger("make_reference")
    images, labels = make_reference(args.data, opts.image_size, opts.max_images)
    atomic_save_npz(args.out, arr_0=images, labels=labels)
    logger.info(f"wrote {args.out}: {images.shape[0]} images of {opts.image_size}px, "
                f"{len(np.unique(labels))} classes")


if __name__ == "__main__":
    run_stage(main)
