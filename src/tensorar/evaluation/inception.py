"""InceptionV3 features as ADM's evaluator reads them from the 2015 TF graph, computed in PyTorch.

torch-fidelity ships a port of that graph (TF1 bilinear resize to 299 included) whose pool_3 features
match TF's; we load its converted weights from a local file and read three things per image:
- "pool": pool_3, 2048-d (FID, precision / recall);
- "logits": pool_3 @ fc.weight^T, 1008 classes, no bias (ADM feeds softmax/logits/MatMul to the IS);
- "spatial": ADM's `mixed_6/conv` (the 1x1 branch of Mixed_6d, 17x17x192), first 7 channels,
  flattened in TF's NHWC order: 17*17*7 = 2023-d (sFID).
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import torch

from tensorar.fileio import sha256_file

WEIGHTS_NAME = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_SHA256_PREFIX = "6726825d"
WEIGHTS_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + WEIGHTS_NAME
SPATIAL_CHANNELS = 7  # ADM keeps mixed_6/conv[..., :7]


@contextlib.contextmanager
def tf32_disabled() -> Iterator[None]:
    """Full float32 matmuls / convolutions inside the block.

    TF32 keeps 10 mantissa bits, so features would drift from the float32 TF graph ADM used.
    """
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved



class InceptionFeatureExtractor:
    name = "inception-v3-compat"
    comparable_with_paper = True

    def __init__(self, weights_path: str | Path, device: str | torch.device = "cpu", *,
                 verify_hash: bool = True):
        """`verify_hash=False` is for tests that build the network from random weights."""
        from torch_fidelity.feature_extractor_inceptionv3 import (
            FeatureExtractorInceptionV3,
        )

        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"Inception weights not found: {path}. Download {WEIGHTS_NAME} from torch-fidelity's GitHub "
                f"releases ({WEIGHTS_URL}) and pass its path with --inception-weights; nothing is downloaded "
                "at run time.")
        if verify_hash:
            digest = sha256_file(path)
            if not digest.startswith(WEIGHTS_SHA256_PREFIX):
                raise ValueError(f"{path} has sha256 {digest[:16]}..., expected a prefix {WEIGHTS_SHA256_PREFIX} "
                                 f"({WEIGHTS_NAME} from {WEIGHTS_URL})")
        self.device = torch.device(device)
        # A local weights path makes torch-fidelity load the file instead of downloading it.
        self.net = FeatureExtractorInceptionV3(
            self.name, ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path)).to(self.device)
        self._spatial: torch.Tensor | None = None
        self.net.Mixed_6d.branch1x1.register_forward_hook(self._keep_spatial)

    def _keep_spatial(self, module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self._spatial = output[:, :SPATIAL_CHANNELS]  # (B, 7, 17, 17)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = images.to(self.device).permute(0, 3, 1, 2)  # (B, 3, H, W) uint8; resized to 299 inside
        with tf32_disabled():
            pool, logits = self.net(x)  # (B, 2048), (B, 1008)
        spatial = self._spatial.permute(0, 2, 3, 1).flatten(1)  # (B, 17*17*7) in NHWC order
        self._spatial = None
        return {"pool": pool.cpu(), "logits": logits.cpu(), "spatial": spatial.float().cpu()}

