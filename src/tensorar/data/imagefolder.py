"""ImageFolder datasets (`root/<class>/<image>`) with LlamaGen's pre-processing.

Order is deterministic: class index = position of the class folder in sorted order, images sorted by
path within each class (torchvision's ImageFolder guarantees both), so every rank and every rerun sees
the same image at the same index.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torchvision import datasets, transforms

from tensorar.data.captions import CaptionedImages, is_captioned


def center_crop_arr(pil_image: Image.Image, image_size: int) -> Image.Image:
    """ADM's (and LlamaGen's) center crop: downscale by 2 with BOX filtering while the short side is at
    least twice the target (anti-aliasing), BICUBIC-resize the short side to `image_size`, then crop
    the centre square."""
    while min(*pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC)
    arr = np.array(pil_image)  # (H, W, 3) uint8
    top = (arr.shape[0] - image_size) // 2
    left = (arr.shape[1] - image_size) // 2
    return Image.fromarray(arr[top:top + image_size, left:left + image_size])


# PIL / uint8 HWC -> float (3, H, W) in [-1, 1], the tokenizer's input range.
to_signed_tensor = transforms.Compose([
    transforms.ToTensor(),
    transforms.Normalize(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]),
])


def image_folder(root: str | Path, transform: Callable | None = None) -> datasets.ImageFolder:
    """torchvision ImageFolder (RGB) with a clear error when the folder is missing or empty."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"image folder not found: {root} (expected {root}/<class>/<image>.png; the toy dataset is "
            f"made with `python -m tensorar make_digits --out DIR`, ImageNet's train/val folders come "
            f"from https://image-net.org)")
    return datasets.ImageFolder(str(root), transform=transform)


def load_all(root: str | Path, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A small ImageFolder (or captioned set: labels 0) as tensors: images (N, 3, S, S) in [-1, 1] and
    labels (N,) int64."""
    transform = transforms.Compose([transforms.Lambda(lambda im: center_crop_arr(im, image_size)), to_signed_tensor])
    if is_captioned(root):
        ds = CaptionedImages(root, transform)
        return torch.stack([ds[i][0] for i in range(len(ds))]), torch.zeros(len(ds), dtype=torch.long)
    ds = image_folder(root, transform)
    images = torch.stack([ds[i][0] for i in range(len(ds))])  # (N, 3, S, S)
    return images, torch.tensor(ds.targets, dtype=torch.long)
