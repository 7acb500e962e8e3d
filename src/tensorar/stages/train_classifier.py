"""Train the toy feature network (a small digits classifier) used in place of Inception.

    python -m tensorar train_classifier --data DIR/train --val-data DIR/val --out CLS.pt

Writes CLS.pt (`{"kind": "toy_classifier", "config", "model", "classes", ...}`, loaded by
`ToyFeatureExtractor.from_checkpoint`) and CLS.json (held-out accuracy, timing). The whole train split
fits in memory as one uint8 tensor, so there is no DataLoader; batches are drawn from a seeded generator
and the run is bit-reproducible on the CPU.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from tensorar.data.imagefolder import image_folder
from tensorar.distributed import get_logger
from tensorar.errors import run_stage
from tensorar.toy.features import (
    ToyClassifier,
    ToyClassifierConfig,
    to_model_input,
)
from tensorar.fileio import atomic_torch_save, atomic_write_json
from tensorar.options import add_arguments, from_arguments
from tensorar.training.options import ClassifierSetup, ClassifierTrainOptions


def load_uint8(root: str | Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """An ImageFolder of equally sized images as uint8 (N, H, W, 3), int64 labels (N,) and class names."""
    ds = image_folder(root)
    arrays = [np.asarray(ds.loader(path)) for path, _ in ds.samples]  # each (H, W, 3) uint8
    sizes = {a.shape for a in arrays}
    if len(sizes) != 1:
        raise ValueError(f"{root}: images must share one size to be batched, found {sorted(sizes)}")
    return torch.from_numpy(np.stack(arrays)), torch.tensor(ds.targets), ds.classes


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Light random affine on (B, 3, S, S) in [-1, 1]: rotate +-10 deg, scale +-10 %, shift +-1/8 side.

    Generated digits are never pixel-aligned copies of the training set; without this the features
    would react to sub-stroke shifts more than to what the digit looks like.
    """
    b = x.shape[0]
    u = torch.rand(b, 4, generator=generator) * 2 - 1  # (B, 4) uniform in [-1, 1]
    angle, scale = u[:, 0] * math.radians(10), 1 + 0.1 * u[:, 1]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    shift = u[:, 2:] * 0.25  # normalised coordinates span 2, so 0.25 = 1/8 of the side
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)  # (B, S, S, 2)
    # Sample x + 1 so that out-of-image pixels (zeros padding) come back as -1, the black background.
    return F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1


@torch.no_grad()
def accuracy(model: ToyClassifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 512) -> float:
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for i in range(0, len(images), batch_size):
        x = to_model_input(images[i:i + batch_size].to(device), model.config.image_size)
        correct += (model(x)["logits"].argmax(-1).cpu() == labels[i:i + batch_size]).sum().item()
    return correct / len(images)


def train(model: ToyClassifier, images: torch.Tensor, labels: torch.Tensor, *, steps: int, batch_size: int,
          lr: float, seed: int, progress: bool = True) -> None:
    """AdamW with a cosine schedule over `steps` random-with-replacement batches of (images, labels)."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    model.train()
    bar = tqdm(range(steps), desc="train_classifier", disable=not progress)
    for _ in bar:
        idx = torch.randint(len(images), (batch_size,), generator=generator)
        x = augment(to_model_input(images[idx], model.config.image_size), generator).to(device)
        loss = F.cross_entropy(model(x)["logits"], labels[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="ImageFolder to train on (DIR/train)")
    parser.add_argument("--val-data", required=True, help="held-out ImageFolder (DIR/val) for the accuracy")
    parser.add_argument("--out", required=True, help="CLS.pt; CLS.json is written next to it")
    add_arguments(parser.add_argument_group("network (ClassifierSetup)"), ClassifierSetup)
    add_arguments(parser.add_argument_group("training (ClassifierTrainOptions)"), ClassifierTrainOptions)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup = from_arguments(parser, args, ClassifierSetup)
    from_arguments(parser, args, ClassifierTrainOptions)  # checks the values, naming the flag
    log = get_logger("train_classifier")

    torch.manual_seed(args.seed)
    train_images, train_labels, classes = load_uint8(args.data)
    val_images, val_labels, val_classes = load_uint8(args.val_data)
    if val_classes != classes:
        raise SystemExit(f"train classes {classes} and val classes {val_classes} differ")
    config = ToyClassifierConfig(image_size=setup.image_size, num_classes=len(classes))
    model = ToyClassifier(config).to(setup.device)
    log.info(f"{len(train_images)} train / {len(val_images)} val images, {len(classes)} classes, "
             f"{sum(p.numel() for p in model.parameters()):,} parameters")

    start = time.perf_counter()
    train(model, train_images, train_labels, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
          seed=args.seed)
    seconds = time.perf_counter() - start
    val_acc = accuracy(model, val_images, val_labels)
    train_acc = accuracy(model, train_images, train_labels)
    log.info(f"val accuracy {val_acc:.4f} (train {train_acc:.4f}) after {args.steps} steps in {seconds:.1f} s")

    out = Path(args.out)
    model_cpu = {k: v.cpu() for k, v in model.state_dict().items()}
    atomic_torch_save({"kind": "toy_classifier", "config": asdict(config), "model": model_cpu,
                       "classes": classes, "step": args.steps, "val_accuracy": val_acc}, out)
    card = Path(args.data).parent / "dataset_card.json"  # present when the data came from make_digits
    atomic_write_json(out.with_suffix(".json"), {
        "val_accuracy": val_acc,
        "train_accuracy": train_acc,
        "num_val": len(val_images),
        "num_train": len(train_images),
        "classes": classes,
        "train_seconds": round(seconds, 2),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "config": asdict(config),
        "data": str(args.data),
        "val_data": str(args.val_data),
        "dataset_sha256": json.loads(card.read_text())["sha256"] if card.is_file() else None,
    })


if __name__ == "__main__":
    run_stage(main)
