"""Images -> VQ token grids, once, so AR training never runs the tokenizer (LlamaGen's extract_codes_c2i).

    python -m tensorar extract_codes --data DIR/train --vq VQ.pt --out CODES/ --image-size S
    torchrun --nproc_per_node 8 -m tensorar extract_codes ... --vq vq_ds16_c2i.pt --vq-preset VQ-16

Every image yields A augmented views, each tokenized to an h x w grid stored row-major (T = h*w):
  --augment tencrop  LlamaGen's `--ten-crop`: resize + center-crop to int(1.1*S), then torchvision's
                     TenCrop(S) = the 4 corner crops + the centre crop of the image, then the same five
                     crops of the horizontally mirrored image: A = 10, in the order
                     tl, tr, bl, br, center, tl_flip, tr_flip, bl_flip, br_flip, center_flip
                     (tl_flip is the mirror of tr, etc.). With --no-flip: FiveCrop(S), A = 5.
                     When int(1.1*S) - S is odd, torchvision rounds the centre-crop offset down, so
                     center_flip is the mirror of a crop 1 px right of "center"; for S = 16 (margin 1)
                     "center" even equals "tl" and center_flip equals tl_flip: 8 distinct views.
  --augment center   LlamaGen's default: center crop to S plus its mirror image, A = 2 (view 0 is the
                     plain centre crop). With --no-flip: A = 1.
AR training draws one view per image per step (LlamaGen picks one of the ten crops at random).

`--data` is an ImageFolder (class-conditional: classes = sorted folder names, images sorted by path) or a
captioned text-image set (tensorar.data.captions: a captions.jsonl, or webdataset tar shards); a
captioned set also gets `captions.jsonl` (item i's caption on line i) and labels 0.

Outputs in --out: `codes_{i:05d}.npy` (n_i, A, T) uint16 (int32 for vocabularies over 65,536), `labels_{i:05d}.npy` int64 (n_i,), shard i holding
images [i*shard_size, (i+1)*shard_size) of the dataset, and `manifest.json`. Under torchrun rank r does the shards with i % world_size == r. Shards are
written atomically and a shard whose files exist is skipped, so a killed job resumes where it stopped.
`identity.json` records what made the shards (the tokenizer's sha256, the image list, every setting):
a rerun with anything else deletes them first and starts fresh, saying what changed (Snakemake deletes
manifest.json before a rerun, so the manifest cannot be what decides). The manifest is written with
"complete": false at the start and rewritten with "complete": true by rank 0 once every rank is done.

Read the result with `tensorar.data.codes.CodeStore(dir)` (memory-mapped shards; training) or
`load_codes(dir) -> (codes (N, A, T) int64, labels (N,) int64, manifest)` (all in memory; small sets).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Subset
from torchvision import transforms
from tqdm import tqdm

from tensorar.data.captions import CaptionedImages, CaptionReading, is_captioned
from tensorar.data.codes import CAPTIONS, MANIFEST, CodesOptions, CodeViews, code_dtype, shard_names
from tensorar.data.imagefolder import center_crop_arr, image_folder, to_signed_tensor
from tensorar.distributed import (
    barrier,
    cleanup_distributed,
    get_logger,
    init_distributed,
)
from tensorar.errors import run_stage
from tensorar.fileio import (
    atomic_save_npy,
    atomic_write_json,
    atomic_write_text,
    claim_for,
    content_id,
    exclusive_lock,
    identity_hash,
    remove_stale_temp_files,
)
from tensorar.models.loading import TokenizerSource
from tensorar.options import add_arguments, from_arguments

TENCROP_CROP_RANGE = 1.1  # LlamaGen's --crop-range: crops of S are taken from a int(1.1*S) centre crop
VIEW_NAMES = {
    ("tencrop", True): ["tl", "tr", "bl", "br", "center", "tl_flip", "tr_flip", "bl_flip", "br_flip",
                        "center_flip"],
    ("tencrop", False): ["tl", "tr", "bl", "br", "center"],
    ("center", True): ["center", "center_flip"],
    ("center", False): ["center"],
}


class Views:
    """PIL image -> (A, 3, S, S) float in [-1, 1], the views in VIEW_NAMES[(augment, flip)] order.
    A class rather than lambdas so DataLoader workers can pickle it."""

    def __init__(self, image_size: int, augment: str, flip: bool):
        if augment not in ("tencrop", "center"):
            raise ValueError(f"unknown augmentation {augment!r}")
        self.image_size, self.augment, self.flip = image_size, augment, flip

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if self.augment == "tencrop":
            crop = transforms.TenCrop if self.flip else transforms.FiveCrop
            image = center_crop_arr(image, int(self.image_size * TENCROP_CROP_RANGE))
            views = list(crop(self.image_size)(image))
        else:
            image = center_crop_arr(image, self.image_size)
            views = [image, image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)] if self.flip else [image]
        return torch.stack([to_signed_tensor(v) for v in views])  # (A, 3, S, S)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tensorar extract_codes", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="ImageFolder: DIR/<class>/<image>")
    add_arguments(parser.add_argument_group("tokenizer (TokenizerSource)"), TokenizerSource)
    parser.add_argument("--out", required=True, help="output folder")
    add_arguments(parser.add_argument_group("codes (CodesOptions)"), CodesOptions)
    add_arguments(parser.add_argument_group("views (CodeViews)"), CodeViews)
    add_arguments(parser.add_argument_group("captioned data (CaptionReading)"), CaptionReading)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    source = from_arguments(parser, args, TokenizerSource)
    opts = from_arguments(parser, args, CodesOptions)

    dist_info = init_distributed()
    log = get_logger("extract_codes", dist_info.is_main)
    out = Path(args.out)
    code_views = from_arguments(parser, args, CodeViews)
    flip = code_views.flip
    views = VIEW_NAMES[(code_views.augment, flip)]

    tokenizer = source.load(device=dist_info.device)
    if opts.image_size % tokenizer.config.downsample:
        parser.error(f"--image-size must be a multiple of the tokenizer's downsampling {tokenizer.config.downsample}")
    grid = [opts.image_size // tokenizer.config.downsample] * 2
    views_of = Views(opts.image_size, code_views.augment, flip)
    captioned = is_captioned(args.data)  # a text-image set (JSONL or tar shards) rather than class folders
    dataset = CaptionedImages(args.data, views_of, from_arguments(parser, args, CaptionReading)) if captioned \
        else image_folder(args.data, views_of)
    classes = [] if captioned else dataset.classes
    num_shards = math.ceil(len(dataset) / opts.shard_size)
    manifest = {
        "count": len(dataset),
        "grid": grid,
        "vocab_size": tokenizer.config.codebook_size,
        "num_augmentations": len(views),
        "augmentation": code_views.augment,
        "flip": flip,
        "views": views,
        "image_size": opts.image_size,
        "shard_size": opts.shard_size,
        "shards": [{"codes": shard_names(i)[0], "labels": shard_names(i)[1],
                    "count": min(opts.shard_size, len(dataset) - i * opts.shard_size)}
                   for i in range(num_shards)],
        "condition": "caption" if captioned else "class",
        "num_classes": len(classes),
        "class_names": classes,
        "data": str(args.data),
        "tokenizer_path": str(source.vq),
        "tokenizer_preset": source.vq_preset,
        "tokenizer_config": asdict(tokenizer.config),
    }
    with contextlib.ExitStack() as held:
        if dist_info.is_main:
            held.enter_context(exclusive_lock(out, "extract_codes job"))
            remove_stale_temp_files(out)
            # What the codes are made of: the tokenizer's bytes, the images (their list) and every setting
            # that changes a code. Shards of anything else are deleted before a single new one is written.
            identity = {"tokenizer_sha256": content_id(source.vq), "images": image_list_hash(dataset),
                        **{k: v for k, v in manifest.items() if k not in ("data", "tokenizer_path")}}
            claim_for(out, identity, [MANIFEST, "codes_*.npy", "labels_*.npy", CAPTIONS], log, "code shards")
            manifest.update(tokenizer_sha256=identity["tokenizer_sha256"], images_sha256=identity["images"],
                            identity=identity_hash(identity))
            atomic_write_json(out / MANIFEST, {**manifest, "complete": False})
        barrier()
        extract_shards(tokenizer, dataset, manifest, out, opts, dist_info, log)
        barrier()
        if dist_info.is_main:
            if captioned:  # item i's caption, beside its codes (tensorar encode_captions reads them)
                atomic_write_text(out / CAPTIONS, "".join(json.dumps(c) + "\n" for c in dataset.captions))
            atomic_write_json(out / MANIFEST, {**manifest, "complete": True})
            log.info(f"wrote {len(dataset)} x {len(views)} token grids to {out}")
    cleanup_distributed()


def image_list_hash(dataset) -> str:
    """The images' identity: their paths relative to the folder, in order, with their classes or captions
    (cheap even for ImageNet's 1.28M files; a file rewritten in place under the same name is not
    detected)."""
    if isinstance(dataset, CaptionedImages):
        return identity_hash([[str(item), caption] for item, caption in zip(dataset._items, dataset.captions)])
    root = Path(dataset.root)
    listing = [(str(Path(path).relative_to(root)), label) for path, label in dataset.samples]
    return identity_hash(listing)


def extract_shards(tokenizer, dataset, manifest: dict, out: Path, opts: CodesOptions, dist_info, log) -> None:
    """This rank's missing shards (i % world_size == rank), each written atomically."""
    views = manifest["views"]
    mine = [i for i in range(len(manifest["shards"])) if i % dist_info.world_size == dist_info.rank]
    # Codes are written after labels, atomically: an existing codes file means a finished shard.
    todo = [i for i in mine if not (out / shard_names(i)[0]).is_file()]
    log.info(f"{len(dataset)} images, {manifest['num_classes']} classes -> {len(manifest['shards'])} shards of "
             f"<= {opts.shard_size}; A={len(views)} views ({manifest['augmentation']}, flip={manifest['flip']}), "
             f"{manifest['grid'][0]}x{manifest['grid'][1]} tokens; rank 0: {len(mine) - len(todo)} of its "
             f"{len(mine)} shards done")
    bar = tqdm(total=sum(manifest["shards"][i]["count"] for i in todo), desc="extract_codes", unit="img",
               disable=not dist_info.is_main, dynamic_ncols=True)
    for i in todo:
        start = i * opts.shard_size
        loader = DataLoader(Subset(dataset, range(start, start + manifest["shards"][i]["count"])),
                            batch_size=opts.batch_size, shuffle=False, num_workers=opts.num_workers)
        codes, labels = [], []
        for x, y in loader:  # x: (B, A, 3, S, S)
            indices = tokenizer.encode(x.flatten(0, 1).to(dist_info.device))  # (B*A, h, w)
            codes.append(indices.reshape(len(x), len(views), -1).cpu())  # (B, A, h*w), row-major grid
            labels.append(torch.zeros_like(y) if manifest["condition"] == "caption" else y)  # no classes
            bar.update(len(x))
        codes_name, labels_name = shard_names(i)
        atomic_save_npy(out / labels_name, torch.cat(labels).numpy().astype(np.int64))
        atomic_save_npy(out / codes_name, torch.cat(codes).numpy().astype(code_dtype(manifest["vocab_size"])))
    bar.close()


if __name__ == "__main__":
    run_stage(main)
