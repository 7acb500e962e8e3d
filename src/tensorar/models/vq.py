"""LlamaGen's VQ image tokenizer (VQ-GAN style), re-implemented so official weights load strictly.

Architecture, parameter names and numerics follow `tokenizer/tokenizer_image/vq_model.py` of
FoundationVision/LlamaGen (commit ce98ec4), itself derived from taming-transformers / MaskGIT:

    image (B,3,H,W) in [-1,1]
      -> Encoder: conv_in, one level per `encoder_ch_mult` entry (ResnetBlocks, a stride-2 conv
         between levels, self-attention after every ResnetBlock of the last, lowest-resolution
         level), mid = Resnet/Attn/Resnet, GroupNorm + swish + conv_out -> z_channels
      -> quant_conv (1x1) -> codebook_embed_dim
      -> VectorQuantizer: nearest l2-normalised codebook entry (cosine similarity) -> indices (B,h,w)
      -> post_quant_conv (1x1) -> Decoder (mirror image, num_res_blocks + 1 blocks per level,
         nearest-neighbour x2 upsampling + conv) -> image (B,3,H,W)

with h = H / 2**(len(ch_mult) - 1). `VQ-16` is the released `vq_ds16_c2i.pt` (16x downsampling,
16384 codes of dim 8): 256 px -> a 16x16 token grid. LlamaGen hard-codes 128 base channels, 2 ResnetBlocks
per level and GroupNorm(32); they are config fields here only so that `VQ-toy` can be small.

Training objective (`forward`): LlamaGen trains its tokenizer with
    L = ||x - x_rec||^2 + ||sg[z] - e||^2 + beta * ||z - sg[e]||^2 + w_p * LPIPS + w_g * GAN,  beta = 0.25.
We implement the first three terms only. The perceptual (LPIPS) term needs VGG weights and the GAN
term a discriminator recipe that we cannot ship and that do not matter for the toy tokenizer, so
our toy reconstructions are blurrier than a real VQ-GAN's. LlamaGen's optional entropy loss is 0 in
its released tokenizer and is omitted.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from tensorar.checkpoint import (
    extract_state_dict,
    load_state_dict_strict,
    read_checkpoint,
)
from tensorar.options import DictForm

WEIGHTS_HINT = ("LlamaGen's tokenizers vq_ds16_c2i.pt (huggingface.co/FoundationVision/LlamaGen) and vq_ds16_t2i.pt "
                "(huggingface.co/peizesun/llamagen_t2i)")

# LlamaGen keeps the indices of the last 65536 quantised vectors in a buffer to report codebook usage;
# the buffer is in its state_dict whatever the codebook size, so it must exist for strict loading.
USAGE_WINDOW = 65536


@dataclass(frozen=True)
class VQConfig(DictForm):
    codebook_size: int = 16384
    codebook_embed_dim: int = 8
    codebook_l2_norm: bool = True
    codebook_show_usage: bool = True
    commit_loss_beta: float = 0.25
    encoder_ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    decoder_ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    z_channels: int = 256
    dropout_p: float = 0.0
    base_channels: int = 128  # LlamaGen hard-codes ch=128; the toy preset needs fewer
    num_res_blocks: int = 2  # hard-coded 2 in LlamaGen (the decoder uses num_res_blocks + 1)
    norm_groups: int = 32  # LlamaGen's GroupNorm(32, eps=1e-6); fewer lets the toy be narrower

    def __post_init__(self):
        # Lists from JSON / asdict round trips become tuples so the config stays hashable and frozen.
        object.__setattr__(self, "encoder_ch_mult", tuple(self.encoder_ch_mult))
        object.__setattr__(self, "decoder_ch_mult", tuple(self.decoder_ch_mult))
        if len(self.encoder_ch_mult) != len(self.decoder_ch_mult):
            raise ValueError("encoder and decoder must have the same number of levels")
        for m in (*self.encoder_ch_mult, *self.decoder_ch_mult):
            if (self.base_channels * m) % self.norm_groups:
                raise ValueError(f"GroupNorm({self.norm_groups}) needs channels divisible by {self.norm_groups}, "
                                 f"got base_channels={self.base_channels} x {m}")

    @property
    def downsample(self) -> int:
        """Image pixels per token along each side."""
        return 2 ** (len(self.encoder_ch_mult) - 1)


VQ_MODELS: dict[str, VQConfig] = {
    # = LlamaGen's VQ_16 / vq_ds16_c2i.pt: 71.9M parameters.
    "VQ-16": VQConfig(),
    # Ours: 16x16 RGB digits -> 8x8 grid of 256 codes; 0.2M parameters, ~3.5 GFLOP per training step of
    # 32 images. Narrow (16/32 channels, GroupNorm(8)) with one ResnetBlock per level so it trains in
    # minutes on 2 CPU cores; on the digits it reaches PSNR ~34 dB with all 256 codes in use.
    "VQ-toy": VQConfig(codebook_size=256, encoder_ch_mult=(1, 2), decoder_ch_mult=(1, 2), z_channels=32,
                       base_channels=16, num_res_blocks=1, norm_groups=8),
}


def _group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, cfg: VQConfig):
        super().__init__()
        self.norm1 = _group_norm(in_ch, cfg.norm_groups)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = _group_norm(out_ch, cfg.norm_groups)
        self.dropout = nn.Dropout(cfg.dropout_p)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        # 1x1 projection of the skip path only where the width changes (LlamaGen's "nin_shortcut").
        self.nin_shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all h*w positions, with 1x1-conv projections."""

    def __init__(self, ch: int, cfg: VQConfig):
        super().__init__()
        self.norm = _group_norm(ch, cfg.norm_groups)
        self.q = nn.Conv2d(ch, ch, 1)
        self.k = nn.Conv2d(ch, ch, 1)
        self.v = nn.Conv2d(ch, ch, 1)
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        h = self.norm(x)
        # (B, C, H, W) -> (B, 1, H*W, C): one head attending over pixels
        q, k, v = (proj(h).flatten(2).transpose(1, 2).unsqueeze(1) for proj in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)  # (B, 1, H*W, C), scale 1/sqrt(C) as in LlamaGen
        out = out.squeeze(1).transpose(1, 2).reshape(B, C, H, W)  # (B, C, H, W)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Pad right/bottom only (taming-transformers' asymmetric padding), so H -> H/2 exactly.
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution of the encoder/decoder: ResnetBlocks (each followed by attention at the lowest
    resolution), then an optional resampler. Attribute names match LlamaGen's state_dict."""

    def __init__(self, in_ch: int, out_ch: int, n_blocks: int, cfg: VQConfig, attn: bool,
                 resample: type[Downsample] | type[Upsample] | None):
        super().__init__()
        self.res = nn.ModuleList(ResnetBlock(in_ch if i == 0 else out_ch, out_ch, cfg)
                                 for i in range(n_blocks))
        self.attn = nn.ModuleList(AttnBlock(out_ch, cfg) for _ in range(n_blocks if attn else 0))
        # Registered as "downsample" / "upsample" (the official key names), or absent.
        self.resample_name = resample.__name__.lower() if resample else None
        if resample:
            self.add_module(self.resample_name, resample(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.res):
            x = block(x)
            if self.attn:
                x = self.attn[i](x)
        if self.resample_name:
            x = getattr(self, self.resample_name)(x)
        return x


def _mid_block(ch: int, cfg: VQConfig) -> nn.ModuleList:
    return nn.ModuleList([ResnetBlock(ch, ch, cfg), AttnBlock(ch, cfg), ResnetBlock(ch, ch, cfg)])


class Encoder(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        widths = [cfg.base_channels * m for m in cfg.encoder_ch_mult]
        last = len(widths) - 1
        self.conv_in = nn.Conv2d(3, cfg.base_channels, 3, padding=1)
        self.conv_blocks = nn.ModuleList(
            Level(cfg.base_channels if i == 0 else widths[i - 1], widths[i], cfg.num_res_blocks, cfg,
                  attn=i == last, resample=Downsample if i != last else None)
            for i in range(len(widths)))
        self.mid = _mid_block(widths[-1], cfg)
        self.norm_out = _group_norm(widths[-1], cfg.norm_groups)
        self.conv_out = nn.Conv2d(widths[-1], cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.conv_blocks:
            h = level(h)
        for block in self.mid:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        # Levels run from the lowest resolution (widest) up; conv_blocks[0] has the attention.
        widths = [cfg.base_channels * m for m in reversed(cfg.decoder_ch_mult)]
        last = len(widths) - 1
        self.conv_in = nn.Conv2d(cfg.z_channels, widths[0], 3, padding=1)
        self.mid = _mid_block(widths[0], cfg)
        self.conv_blocks = nn.ModuleList(
            Level(widths[max(i - 1, 0)], widths[i], cfg.num_res_blocks + 1, cfg,
                  attn=i == 0, resample=Upsample if i != last else None)
            for i in range(len(widths)))
        self.norm_out = _group_norm(widths[-1], cfg.norm_groups)
        self.conv_out = nn.Conv2d(widths[-1], 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        for block in self.mid:
            h = block(h)
        for level in self.conv_blocks:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.codebook_size, cfg.codebook_embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / cfg.codebook_size, 1.0 / cfg.codebook_size)
        if cfg.codebook_l2_norm:
            with torch.no_grad():
                self.embedding.weight.copy_(F.normalize(self.embedding.weight, dim=-1))
        if cfg.codebook_show_usage:
            # Rolling window of recent code indices (as floats, like LlamaGen), updated in train mode.
            self.register_buffer("codebook_used", torch.zeros(USAGE_WINDOW))

    def codebook(self) -> torch.Tensor:
        """(K, D) codebook as used for lookup: re-normalised on every use when codebook_l2_norm."""
        w = self.embedding.weight
        return F.normalize(w, dim=-1) if self.cfg.codebook_l2_norm else w

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """z (B, D, h, w) -> straight-through quantised z (B, D, h, w), indices (B, h, w), losses."""
        B, D, h, w = z.shape
        z = z.permute(0, 2, 3, 1).reshape(B * h * w, D)  # (B*h*w, D)
        if self.cfg.codebook_l2_norm:
            z = F.normalize(z, dim=-1)
        e = self.codebook()  # (K, D)
        # Squared distances ||z||^2 + ||e||^2 - 2 z.e, in the same expanded form as LlamaGen so that
        # argmin ties break identically.
        dist = z.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * z @ e.t()  # (B*h*w, K)
        indices = dist.argmin(dim=1)  # (B*h*w,)
        z_q = e[indices]  # (B*h*w, D)

        if self.cfg.codebook_show_usage and self.training:
            self._record_usage(indices)

        losses = {
            "codebook": F.mse_loss(z_q, z.detach()),  # moves codes towards encoder outputs
            "commit": self.cfg.commit_loss_beta * F.mse_loss(z, z_q.detach()),  # keeps encoder near codes
        }
        z_q = z + (z_q - z).detach()  # straight-through estimator: decoder gradients flow into z
        z_q = z_q.reshape(B, h, w, D).permute(0, 3, 1, 2)  # (B, D, h, w)
        return z_q, indices.reshape(B, h, w), losses

    @torch.no_grad()
    def _record_usage(self, indices: torch.Tensor) -> None:
        new = indices[-USAGE_WINDOW:].to(self.codebook_used.dtype)
        self.codebook_used.copy_(torch.cat([self.codebook_used[len(new):], new]))

    def usage(self) -> float:
        """Fraction of codes seen among the last USAGE_WINDOW quantised vectors (LlamaGen's metric;
        the zero-initialised window counts code 0 until it has filled)."""
        return self.codebook_used.unique().numel() / self.cfg.codebook_size

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (B, h, w) -> codebook vectors (B, D, h, w)."""
        return self.codebook()[indices].permute(0, 3, 1, 2)  # (B, h, w, D) -> (B, D, h, w)


class VQModel(nn.Module):
    def __init__(self, config: VQConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quantize = VectorQuantizer(config)
        self.quant_conv = nn.Conv2d(config.z_channels, config.codebook_embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.codebook_embed_dim, config.z_channels, 1)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def quantize_image(self, x: torch.Tensor):
        """x (B, 3, H, W) in [-1, 1] -> (quant (B, D, h, w), indices (B, h, w), codebook losses)."""
        return self.quantize(self.quant_conv(self.encoder(x)))

    def decode_quant(self, quant: torch.Tensor) -> torch.Tensor:
        """quant (B, D, h, w) -> image (B, 3, H, W), nominally in [-1, 1] (not clamped)."""
        return self.decoder(self.post_quant_conv(quant))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1] -> token grid (B, h, w), int64."""
        return self.quantize_image(x)[1]

    @torch.no_grad()
    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Token grid (B, h, w) -> images (B, 3, H, W), nominally in [-1, 1] (not clamped)."""
        return self.decode_quant(self.quantize.lookup(indices))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training step: reconstruction (B, 3, H, W) and LlamaGen's VQ losses (without LPIPS/GAN)."""
        quant, _, losses = self.quantize_image(x)
        recon = self.decode_quant(quant)
        losses["recon"] = F.mse_loss(recon, x)
        losses["loss"] = losses["recon"] + losses["codebook"] + losses["commit"]
        return recon, losses


def load_vq(path: str | Path, preset: str | None = None, device: str | torch.device = "cpu") -> VQModel:
    """Build a tokenizer from a checkpoint and load it strictly; returns it in eval mode.

    Ours: `{"config": asdict(VQConfig), "model": state_dict, ...}` (preset optional, must agree).
    Official LlamaGen `vq_ds16_c2i.pt`: `{"model": state_dict}` with no config -> pass preset="VQ-16".
    """
    ckpt = read_checkpoint(path, hint=WEIGHTS_HINT)  # weights_only; a missing file says where to get it
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ValueError(f"{path}: expected a dict with a 'model' state_dict")
    if preset is not None:
        if preset not in VQ_MODELS:
            raise ValueError(f"unknown VQ preset {preset!r}; choose from {sorted(VQ_MODELS)}")
        config = VQ_MODELS[preset]
        if "config" in ckpt and VQConfig.from_dict(ckpt["config"]) != config:
            raise ValueError(f"{path}: its stored config differs from preset {preset!r}; drop the preset")
    elif "config" in ckpt:
        config = VQConfig.from_dict(ckpt["config"])
    else:
        raise ValueError(f"{path} has no 'config' (an official LlamaGen file?): pass preset='VQ-16' "
                         f"(--vq-preset VQ-16)")
    model = VQModel(config)
    load_state_dict_strict(model, extract_state_dict(ckpt), f"{path} (VQ config {asdict(config)})")
    return model.to(device).eval()


def vq_config(preset: str, **overrides) -> VQConfig:
    """A preset with fields overridden (e.g. codebook_size)."""
    if preset not in VQ_MODELS:
        raise KeyError(f"unknown VQ preset {preset!r}; known: {', '.join(VQ_MODELS)}")
    return replace(VQ_MODELS[preset], **overrides)


def vq_checkpoint(model: VQModel, **extra) -> dict:
    """The dict `load_vq` reads back: frozen config + state_dict (+ e.g. step)."""
    return {"tokenizer": "vq", "config": asdict(model.config), "model": model.state_dict(), **extra}


__all__ = ["VQConfig", "VQ_MODELS", "VQModel", "load_vq", "vq_checkpoint", "vq_config"]
