"""The toy feature network: a small digits classifier standing in for the ADM evaluator's Inception.

The Inception-v3 weights the ADM evaluator uses cannot ship with the library, so the embedded default
(`evaluate --features toy --classifier CLS.pt`) extracts features with a conv net trained on the digits
train split (`python -m tensorar train_classifier`). It exposes the same three taps as ADM's Inception,
so exactly the same metric code runs on top of it:

    ADM Inception                                   ToyClassifier
    "pool":    pool_3, (B, 2048)                    global average of the last conv block, (B, widths[-1])
    "spatial": mixed_6/conv[..., :7], flattened     a mid-depth conv map's first 7 channels, (H, W, C)
               NHWC, (B, 17*17*7)                   order flattened, (B, (S/2)*(S/2)*7)
    "logits":  pool_3 @ W, (B, 1008)                linear head, (B, 10)

Numbers computed with it are "toy-FID" (and toy sFID / IS / precision / recall): digits-classifier
features, NOT comparable with Inception FID or with any number in the paper. They only rank models
trained on the toy data against each other.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from tensorar.evaluation import features
from tensorar.options import from_mapping


@dataclass(frozen=True)
class ToyClassifierConfig:
    image_size: int = 16  # input side; a multiple of 4 (two 2x poolings)
    in_channels: int = 3
    widths: tuple[int, ...] = (16, 32, 64)  # conv blocks; 2x max-pool between consecutive blocks
    num_classes: int = 10
    spatial_block: int = 1  # whose output feeds "spatial" (mid-depth, like Inception's mixed_6)
    spatial_channels: int = 7  # ADM keeps the first 7 channels of mixed_6/conv

    @property
    def pool_dim(self) -> int:
        return self.widths[-1]

    @property
    def spatial_dim(self) -> int:
        side = self.image_size // 2**self.spatial_block
        return side * side * self.spatial_channels


class ConvBlock(nn.Module):
    """Two 3x3 conv + BatchNorm + ReLU layers at one resolution."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ToyClassifier(nn.Module):
    def __init__(self, config: ToyClassifierConfig):
        super().__init__()
        self.config = config
        c_ins = (config.in_channels, *config.widths[:-1])
        self.blocks = nn.ModuleList(ConvBlock(c_in, c_out) for c_in, c_out in zip(c_ins, config.widths))
        self.head = nn.Linear(config.pool_dim, config.num_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: float (B, C, S, S) in [-1, 1] -> {"pool", "spatial", "logits"}, all (B, D) float."""
        cfg = self.config
        spatial = None
        for i, block in enumerate(self.blocks):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = block(x)  # (B, widths[i], S / 2**i, S / 2**i)
            if i == cfg.spatial_block:
                spatial = x[:, : cfg.spatial_channels].permute(0, 2, 3, 1).flatten(1)  # (B, h*w*7), NHWC order
        pool = x.mean(dim=(2, 3))  # (B, widths[-1])
        return {"pool": pool, "spatial": spatial, "logits": self.head(pool)}


def to_model_input(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 (B, H, W, 3) NHWC, any H, W -> float (B, 3, S, S) in [-1, 1]."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 (B, H, W, 3) images, got {images.dtype} {tuple(images.shape)}")
    x = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (B, 3, H, W)
    if x.shape[-2:] != (image_size, image_size):
        # Downscale by box averaging: at integer factors it exactly undoes make_digits' nearest upscale,
        # so a digit rendered at 64 px gets the features of its 16 px original. Upscale bilinearly.
        down = x.shape[-2] > image_size or x.shape[-1] > image_size
        mode = dict(mode="area") if down else dict(mode="bilinear", align_corners=False)
        x = F.interpolate(x, size=(image_size, image_size), **mode)  # (B, 3, S, S)
    return x


class ToyFeatureExtractor:
    """FeatureExtractor (tensorar.evaluation.features) backed by a trained ToyClassifier; eval mode, no grad."""

    name = "toy-digits-classifier"
    comparable_with_paper = False

    def __init__(self, model: ToyClassifier, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.config = model.config

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images: uint8 (B, H, W, 3) NHWC (any H, W: resized to the classifier's input size).
        Returns float32 {"pool": (B, Dp), "logits": (B, 10), "spatial": (B, Ds)} on the CPU."""
        x = to_model_input(images.to(self.device), self.config.image_size)
        return {k: v.float().cpu() for k, v in self.model(x).items()}

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "ToyFeatureExtractor":
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"toy classifier checkpoint {path} not found; train one with "
                "`python -m tensorar make_digits --out DIR && python -m tensorar train_classifier "
                f"--data DIR/train --val-data DIR/val --out {path}`"
            )
        from tensorar.checkpoint import read_checkpoint  # weights_only; a damaged file is named

        ckpt = read_checkpoint(path)
        model = ToyClassifier(config_from_dict(ckpt["config"]))
        model.load_state_dict(ckpt["model"])
        return cls(model, device)


def config_from_dict(d: dict) -> ToyClassifierConfig:
    """Strict (an unknown key raises). Checkpoints store the config as a plain dict (weights_only-loadable);
    tuples come back as lists."""
    return from_mapping(ToyClassifierConfig, {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()},
                        "ToyClassifierConfig")


FEATURE_NETWORKS = ("inception", "toy")


def build_feature_extractor(kind: str, *, inception_weights: str | Path | None = None,
                            classifier: str | Path | None = None,
                            device: str | torch.device = "cpu") -> features.FeatureExtractor:
    """`kind` is "inception" (needs `inception_weights`; `tensorar.evaluation.features`) or "toy" (needs
    `classifier`, a CLS.pt). `device` places the network; inputs and outputs are CPU tensors."""
    if kind == "toy":
        if classifier is None:
            raise ValueError("--features toy needs --classifier CLS.pt (written by `tensorar train_classifier`)")
        return ToyFeatureExtractor.from_checkpoint(classifier, device=device)
    if kind not in FEATURE_NETWORKS:
        raise ValueError(f"unknown feature network {kind!r}; expected one of {', '.join(FEATURE_NETWORKS)}")
    return features.build_feature_extractor(kind, inception_weights=inception_weights, device=device)
