"""Images -> VQ token grids, once, so AR training never runs the tokenizer (LlamaGen's extract_codes_c2i).

    python -m tensorar.extract_codes --data DIR/train --vq VQ.pt --out CODES/ --image-size S
    torchrun --nproc_per_node 8 -m tensorar.extract_codes ... --vq vq_ds16_c2i.pt --vq-preset VQ-16

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

Outputs in --out: `codes_{i:05d}.npy` int32 (n_i, A, T), `labels_{i:05d}.npy` int64 (n_i,), shard i holding
images [i*shard_size, (i+1)*shard_size) of the ImageFolder (classes = sorted folder names, images sorted
by path), and `manifest.json`. Under torchrun rank r does the shards with i % world_size == r. Shards are
written atomically and a shard whose files exist is skipped, so a killed job resumes where it stopped;
the manifest is written first with "complete": false (a rerun with other settings into the same folder
is refused) and rewritten with "complete": true by rank 0 once every rank is done.

Read the result with `tensorar.data.codes.load_codes(dir) -> (codes (N, A, T) int64, labels (N,) int64, manifest)`.
"""
from __future__ import annotations

import argparse
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

from tensorar.data.imagefolder import center_crop_arr, image_folder, to_signed_tensor
from tensorar.distributed import barrier, cleanup_distributed, get_logger, init_distributed
from tensorar.fileio import atomic_save_npy, atomic_write_json, sha256_file
from tensorar.data.codes import MANIFEST, shard_names
from tensorar.models.vq import VQ_MODELS, load_vq

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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tensorar extract_codes", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="ImageFolder: DIR/<class>/<image>")
    parser.add_argument("--vq", required=True, help="tokenizer checkpoint (ours, or LlamaGen's vq_ds16_c2i.pt)")
    parser.add_argument("--vq-preset", default=None, choices=sorted(VQ_MODELS),
                        help="architecture for official files without a stored config (VQ-16)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--image-size", type=int, required=True)
    parser.add_argument("--augment", choices=["tencrop", "center"], default="tencrop")
    parser.add_argument("--no-flip", action="store_true", help="drop the mirrored views (A: 10 -> 5, 2 -> 1)")
    parser.add_argument("--shard-size", type=int, default=10_000, help="images per output shard")
    parser.add_argument("--batch-size", type=int, default=64, help="images per tokenizer call (x A views)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes")
    args = parser.parse_args(argv)

    dist_info = init_distributed()
    log = get_logger("extract_codes", dist_info.is_main)
    out = Path(args.out)
    flip = not args.no_flip
    views = VIEW_NAMES[(args.augment, flip)]

    vq = load_vq(args.vq, args.vq_preset, device=dist_info.device)
    if args.image_size % vq.config.downsample:
        parser.error(f"--image-size must be a multiple of the tokenizer's downsampling {vq.config.downsample}")
    grid = [args.image_size // vq.config.downsample] * 2
    dataset = image_folder(args.data, Views(args.image_size, args.augment, flip))
    num_shards = math.ceil(len(dataset) / args.shard_size)

    manifest = {
        "count": len(dataset),
        "grid": grid,
        "vocab_size": vq.config.codebook_size,
        "num_augmentations": len(views),
        "augmentation": args.augment,
        "flip": flip,
        "views": views,
        "image_size": args.image_size,
        "shard_size": args.shard_size,
        "shards": [{"codes": shard_names(i)[0], "labels": shard_names(i)[1],
                    "count": min(args.shard_size, len(dataset) - i * args.shard_size)}
                   for i in range(num_shards)],
        "num_classes": len(dataset.classes),
        "class_names": dataset.classes,
        "data": str(args.data),
        "tokenizer_path": str(args.vq),
        "tokenizer_preset": args.vq_preset,
        "tokenizer_config": asdict(vq.config),
    }
    if dist_info.is_main:
        manifest["tokenizer_sha256"] = sha256_file(Path(args.vq))
        previous = out / MANIFEST
        if previous.is_file():
            # Resuming is only sound with identical settings: shards from another tokenizer or crop
            # would be silently mixed in.
            old = json.loads(previous.read_text())
            new = json.loads(json.dumps(manifest))  # tuples -> lists, as stored
            relocatable = {"data", "tokenizer_path"}
            changed = [k for k in new if k not in relocatable and old.get(k) != new[k]]
            if changed:
                raise SystemExit(f"{out} holds codes made with different settings ({', '.join(changed)}); "
                                 f"use another --out or delete it")
        atomic_write_json(previous, {**manifest, "complete": False})
    barrier()

    mine = [i for i in range(num_shards) if i % dist_info.world_size == dist_info.rank]
    # Codes are written after labels, atomically: an existing codes file means a finished shard.
    todo = [i for i in mine if not (out / shard_names(i)[0]).is_file()]
    log.info(f"{len(dataset)} images, {len(dataset.classes)} classes -> {num_shards} shards of "
             f"<= {args.shard_size}; A={len(views)} views ({args.augment}, flip={flip}), "
             f"{grid[0]}x{grid[1]} tokens; rank 0: {len(mine) - len(todo)} of its {len(mine)} shards done")
    bar = tqdm(total=sum(manifest["shards"][i]["count"] for i in todo), desc="extract_codes", unit="img",
               disable=not dist_info.is_main, dynamic_ncols=True)
    for i in todo:
        start = i * args.shard_size
        loader = DataLoader(Subset(dataset, range(start, start + manifest["shards"][i]["count"])),
                            batch_size=args.batch_size, shuffle=False, num_workers=args.num_workers)
        codes, labels = [], []
        for x, y in loader:  # x: (B, A, 3, S, S)
            indices = vq.encode(x.flatten(0, 1).to(dist_info.device))  # (B*A, h, w)
            codes.append(indices.reshape(len(x), len(views), -1).cpu())  # (B, A, h*w), row-major grid
            labels.append(y)
            bar.update(len(x))
        codes_name, labels_name = shard_names(i)
        atomic_save_npy(out / labels_name, torch.cat(labels).numpy().astype(np.int64))
        atomic_save_npy(out / codes_name, torch.cat(codes).numpy().astype(np.int32))
    bar.close()

    barrier()
    if dist_info.is_main:
        atomic_write_json(out / MANIFEST, {**manifest, "complete": True})
        log.info(f"wrote {len(dataset)} x {len(views)} token grids to {out}")
    cleanup_distributed()


if __name__ == "__main__":
    main()
