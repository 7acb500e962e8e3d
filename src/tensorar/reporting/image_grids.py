"""Figures made from generated samples: image grids and TensorAR refinement strips (PNG).

Array code only: inputs are uint8 NHWC images (the sampler's output format) and token grids. Turning
tokens into pixels is the caller's job (`tensorar.sampling.Sampler` decodes with the VQ), so nothing here needs a
model.

A refinement strip (TensorAR paper, Fig. 8/10) shows one sample per row and one decoding step per
column: at step t the image is made of the tokens committed before t plus the model's current k-slot
draft for positions t .. t+k-1; positions not generated yet are painted grey.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch

from tensorar.fileio import atomic_path

GREY = 128  # fill value of not-yet-generated token cells in refinement strips
GRID_SAMPLES, GRID_COLUMNS = 64, 8  # samples shown in `tensorar sample --grid-png`
DRAFT_ROWS, DRAFT_COLUMNS = 4, 8  # samples and decoding steps shown in `tensorar sample --drafts-png`


def image_grid(images: np.ndarray, ncols: int, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """uint8 images (N, H, W, 3) -> one uint8 canvas, row-major with `ncols` columns.

    Cells are separated (and framed) by `pad` pixels of `pad_value`; missing cells of the last row stay
    `pad_value`.
    """
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected images (N, H, W, 3), got {images.shape}")
    n, h, w, _ = images.shape
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    canvas = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, 3), pad_value, dtype=np.uint8)
    for i, image in enumerate(images):
        top = pad + (i // ncols) * (h + pad)
        left = pad + (i % ncols) * (w + pad)
        canvas[top : top + h, left : left + w] = image
    return canvas


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write a uint8 (H, W, 3) array as a PNG, atomically."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image)).save(tmp, format="PNG")


def refinement_steps(num_tokens: int, num_columns: int) -> list[int]:
    """`num_columns` decoding steps spread evenly over [0, num_tokens - 1], first and last included."""
    return sorted({round(x) for x in np.linspace(0, num_tokens - 1, num_columns)})


def refinement_frames(
    tokens: torch.Tensor, drafts: torch.Tensor, steps: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """What the model holds at each of `steps`, then the finished sample as a last column.

    tokens (B, T) final tokens, drafts (B, T, k) the k-slot draft made at each step (slot j proposes
    position t + j) -> frames (B, S + 1, T) token maps and shown (B, S + 1, T) bool, False where a
    position has neither been committed nor drafted (its token in `frames` is a placeholder).
    """
    B, T, k = drafts.shape
    pos = torch.arange(T, device=tokens.device)
    frames, shown = [], []
    for t in steps:
        frame = tokens.clone()  # (B, T): positions < t are committed
        width = min(k, T - t)  # slots past the last position propose nothing
        frame[:, t : t + width] = drafts[:, t, :width]
        frames.append(frame)
        shown.append((pos < t + width).expand(B, T))
    frames.append(tokens)
    shown.append(torch.ones(B, T, dtype=torch.bool, device=tokens.device))
    return torch.stack(frames, 1), torch.stack(shown, 1)  # (B, S + 1, T) each


def grey_out(images: np.ndarray, shown: np.ndarray) -> np.ndarray:
    """Paint token cells that are not `shown` grey.

    images uint8 (N, H, W, 3), shown bool (N, h, w) on the token grid; H and W must be multiples of h, w.
    """
    n, H, W, _ = images.shape
    _, h, w = shown.shape
    if H % h or W % w:
        raise ValueError(f"image {H}x{W} is not a whole number of {h}x{w} token cells")
    pixel_shown = shown.repeat(H // h, axis=1).repeat(W // w, axis=2)  # (N, H, W)
    return np.where(pixel_shown[..., None], images, np.uint8(GREY))


def write_sample_grid(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray,
                      count: int = GRID_SAMPLES) -> list[int]:
    """The first `count` samples ordered by label (stable sort) -> PNG; returns their labels in order."""
    order = np.argsort(labels[:count], kind="stable")
    save_png(path, image_grid(images[:count][order], ncols=GRID_COLUMNS))
    return labels[:count][order].tolist()


def write_refinement_strip(path: str | os.PathLike, frames: np.ndarray, shown: np.ndarray, columns: int) -> None:
    """Decoded frames uint8 (B * columns, H, W, 3), row-major, with their `shown` token cells (B * columns,
    h, w) -> the strip PNG (cells not shown grey), one sample per row."""
    save_png(path, image_grid(grey_out(frames, shown), ncols=columns))
