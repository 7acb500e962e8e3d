"""Open-MAGVIT2's lookup-free (LFQ) image tokenizer, re-implemented so the official weights load strictly.

Architecture, parameter names and numerics follow TencentARC/SEED-Voken at commit b9a17ea
(`src/Open_MAGVIT2/models/lfqgan.py`, `modules/diffusionmodules/improved_model.py`,
`modules/vqvae/lookup_free_quantize.py`), as written up in shared/reference/open_magvit2/spec.md (§3):

    image (B,3,H,W) in [-1,1]
      -> Encoder: conv_in, one level per `ch_mult` entry (ResBlocks, a stride-2 conv between levels),
         mid ResBlocks, GroupNorm + swish + 1x1 conv_out -> z (B, K, h, w), K = z_channels bits
      -> LFQ: bit_i = (z_i > 0), code = sum_i bit_i 2^i (little-endian), quant = +-1 planes
      -> Decoder: conv_in, mid ResBlocks, per level an AdaptiveGroupNorm conditioned on the +-1 planes,
         ResBlocks and a depth-to-space x2 upsampler -> image (B,3,H,W), not clamped

with h = H / 2**(len(ch_mult) - 1). There is no codebook to learn: the 2^K codes are the corners of
the hypercube. `LFQ-256` is the released `imagenet_256_L.ckpt` (2^18 codes, 16x downsampling: 256 px
-> a 16x16 grid). The AR models factorise each code into (pre, post) = (low b0 bits, high b1 bits),
[6, 12] for the release (spec §1.3); `encode` returns the full code, `split_codes` the pair.

Training objective (`forward`), as the official generator loss with `imagenet_lfqgan_256_L.yaml`:
    L = |x - x_rec|_1 + 0.1 * (H_sample - H_codebook) + 0.25 * ||z - sg[q]||^2  (+ LPIPS + GAN officially)
H_sample is the mean entropy of each position's softmax over all 2^K codes (logits 2 z.c / 0.01),
H_codebook the entropy of their batch mean (MAGVIT-v2 §3.1's entropy penalty; the official
`entropy_loss`, including its 1e-5 epsilons). The loss materialises (positions x 2^K) probabilities,
as the official code does: cheap for the toy (2^8 codes), about 268 MB per 256 px image for 2^18.
We omit LPIPS (needs VGG weights we cannot ship) and the GAN term (discriminator recipe), as
tensorar.models.vq does, so toy reconstructions are blurrier than a real LFQ-GAN's.

Checked against the official modules run on the same CPU: encoder output, codes, decodes and the
entropy losses are bit-identical (the commitment loss to one rounding step of its mean).
(~450 lines, above the ~400 guide: encoder, quantizer, decoder and loss are one official model whose
weights load strictly only together, as tensorar.models.vq keeps LlamaGen's VQ in one module.)
"""
from __future__ import annotations

import logging
from collections import Counter
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

log = logging.getLogger("tensorar.lfq")


@dataclass(frozen=True)
class LFQConfig(DictForm):
    base_channels: int = 128  # official `ch`
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)  # one level each; len - 1 downsamplings
    num_res_blocks: int = 4  # per level, and also the number of mid blocks (official quirk)
    z_channels: int = 18  # = bits per code (official embed_dim = z_channels, n_embed = 2**z_channels)
    factorized_bits: tuple[int, int] = (6, 12)  # (b0, b1): pre = low b0 bits, post = high b1 bits
    norm_groups: int = 32  # official GroupNorm(32, eps=1e-6); fewer lets the toy be narrower
    entropy_weight: float = 0.1  # official lossconfig codebook_weight
    commit_weight: float = 0.25  # official lossconfig commit_weight
    sample_entropy_weight: float = 1.0  # official sample_minimization_weight
    codebook_entropy_weight: float = 1.0  # official batch_maximization_weight
    entropy_temperature: float = 0.01  # official entropy_loss temperature

    def __post_init__(self):
        # Lists from JSON / asdict round trips become tuples so the config stays hashable and frozen.
        object.__setattr__(self, "ch_mult", tuple(self.ch_mult))
        object.__setattr__(self, "factorized_bits", tuple(self.factorized_bits))
        if len(self.factorized_bits) != 2 or sum(self.factorized_bits) != self.z_channels:
            raise ValueError(f"factorized_bits {self.factorized_bits} must be two numbers summing to "
                             f"z_channels={self.z_channels}")
        for m in self.ch_mult:
            if (self.base_channels * m) % self.norm_groups:
                raise ValueError(f"GroupNorm({self.norm_groups}) needs channels divisible by {self.norm_groups}, "
                                 f"got base_channels={self.base_channels} x {m}")

    @property
    def codebook_size(self) -> int:
        """Number of codes: every sign pattern of the z_channels bits."""
        return 2 ** self.z_channels

    @property
    def downsample(self) -> int:
        """Image pixels per token along each side."""
        return 2 ** (len(self.ch_mult) - 1)


LFQ_MODELS: dict[str, LFQConfig] = {
    # = Open-MAGVIT2's imagenet_256_L.ckpt (and the tokenizer inside AR_256_{B,L,XL}.ckpt), with the
    # AR configs' [6, 12] factorisation: 115,127,829 parameters (encoder 49.8M, decoder 65.4M).
    "LFQ-256": LFQConfig(),
    # Ours: 16x16 (or 32x32) RGB toy images -> 8x8 (16x16) grid of 2^8 = 256 codes, split 4 + 4 bits;
    # same grid and vocabulary as VQ-toy. 16/32 channels, GroupNorm(8), one ResBlock per level.
    "LFQ-toy": LFQConfig(base_channels=16, ch_mult=(1, 2), num_res_blocks=1, z_channels=8,
                         factorized_bits=(4, 4), norm_groups=8),
}


def lfq_config(preset: str, **overrides) -> LFQConfig:
    """A preset with fields overridden (e.g. z_channels and factorized_bits together)."""
    if preset not in LFQ_MODELS:
        raise KeyError(f"unknown LFQ preset {preset!r}; known: {', '.join(LFQ_MODELS)}")
    return replace(LFQ_MODELS[preset], **overrides)


def swish(x: torch.Tensor) -> torch.Tensor:
    # Written as the official x * sigmoid(x) rather than F.silu, so fp32 results round identically.
    return x * torch.sigmoid(x)


def _group_norm(channels: int, cfg: LFQConfig, affine: bool = True) -> nn.GroupNorm:
    return nn.GroupNorm(cfg.norm_groups, channels, eps=1e-6, affine=affine)


class ResBlock(nn.Module):
    """x + conv2(swish(GN2(conv1(swish(GN1(x)))))), bias-free 3x3 convs (spec §3)."""

    def __init__(self, in_ch: int, out_ch: int, cfg: LFQConfig):
        super().__init__()
        # Registration order = the official state_dict order.
        self.norm1 = _group_norm(in_ch, cfg)
        self.norm2 = _group_norm(out_ch, cfg)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        # Bias-free 1x1 projection of the skip path only where the width changes.
        self.nin_shortcut = nn.Conv2d(in_ch, out_ch, 1, bias=False) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(swish(self.norm2(h)))
        return h + self.nin_shortcut(x)


def depth_to_space(x: torch.Tensor) -> torch.Tensor:
    """(B, 4C, h, w) -> (B, C, 2h, 2w) in DCR order: out[c, 2h+a, 2w+b] = in[(2a+b)*C + c, h, w] (spec §3).
    Not F.pixel_shuffle, which reads channel c*4 + 2a+b."""
    B, C4, h, w = x.shape
    x = x.reshape(B, 2, 2, C4 // 4, h, w)  # (B, a, b, C, h, w)
    x = x.permute(0, 3, 4, 1, 5, 2)  # (B, C, h, a, w, b)
    return x.reshape(B, C4 // 4, 2 * h, 2 * w)  # (B, C, 2h, 2w)


class Upsampler(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, 4 * ch, 3, padding=1)  # with bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depth_to_space(self.conv1(x))


class AdaptiveGroupNorm(nn.Module):
    """GroupNorm without affine, then a per-sample scale/shift predicted from the code planes' statistics."""

    def __init__(self, z_channels: int, ch: int, cfg: LFQConfig):
        super().__init__()
        self.gn = _group_norm(ch, cfg, affine=False)
        self.gamma = nn.Linear(z_channels, ch)
        self.beta = nn.Linear(z_channels, ch)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        B, K, h, w = style.shape
        style = style.reshape(B, K, h * w)  # (B, K, h*w)
        # torch's default *unbiased* (N-1) variance, +1e-6 inside the sqrt, despite the official
        # "not unbias" comment (spec §3, §6.8). Needs h*w >= 2 (a 1x1 grid gives NaN, as officially).
        scale = self.gamma((style.var(dim=-1) + 1e-6).sqrt())  # (B, C)
        shift = self.beta(style.mean(dim=-1))  # (B, C)
        return self.gn(x) * scale[:, :, None, None] + shift[:, :, None, None]


class Level(nn.Module):
    """One resolution: `block` ResBlocks, then an optional resampler registered under the official name
    ("downsample": a plain stride-2 3x3 conv with bias; "upsample": an Upsampler) or absent."""

    def __init__(self, in_ch: int, out_ch: int, cfg: LFQConfig, resample: str | None):
        super().__init__()
        self.block = nn.ModuleList(ResBlock(in_ch if i == 0 else out_ch, out_ch, cfg)
                                   for i in range(cfg.num_res_blocks))
        self.resample_name = resample
        if resample == "downsample":
            # Symmetric padding 1 (not taming's right/bottom pad): H -> H/2 for even H.
            self.downsample = nn.Conv2d(out_ch, out_ch, 3, stride=2, padding=1)
        elif resample == "upsample":
            self.upsample = Upsampler(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        return getattr(self, self.resample_name)(x) if self.resample_name else x


class Encoder(nn.Module):
    def __init__(self, cfg: LFQConfig):
        super().__init__()
        widths = [cfg.base_channels * m for m in cfg.ch_mult]
        last = len(widths) - 1
        self.conv_in = nn.Conv2d(3, cfg.base_channels, 3, padding=1, bias=False)
        self.down = nn.ModuleList(
            Level(cfg.base_channels if i == 0 else widths[i - 1], widths[i], cfg,
                  resample="downsample" if i < last else None)
            for i in range(len(widths)))
        # As many mid blocks as ResBlocks per level (4 for the release; spec §3).
        self.mid_block = nn.ModuleList(ResBlock(widths[-1], widths[-1], cfg) for _ in range(cfg.num_res_blocks))
        self.norm_out = _group_norm(widths[-1], cfg)
        self.conv_out = nn.Conv2d(widths[-1], cfg.z_channels, 1)  # 1x1 with bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        for block in self.mid_block:
            h = block(h)
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, cfg: LFQConfig):
        super().__init__()
        widths = [cfg.base_channels * m for m in cfg.ch_mult]
        levels = range(len(widths))
        # in_width[i]: what level i receives; levels run from the widest (last) down to level 0.
        in_width = [widths[i + 1] if i + 1 < len(widths) else widths[-1] for i in levels]
        self.conv_in = nn.Conv2d(cfg.z_channels, widths[-1], 3, padding=1)  # with bias, unlike the encoder's
        self.mid_block = nn.ModuleList(ResBlock(widths[-1], widths[-1], cfg) for _ in range(cfg.num_res_blocks))
        # up[i] / adaptive[i] are indexed by level (up[0] = full resolution), as in the official lists.
        self.up = nn.ModuleList(Level(in_width[i], widths[i], cfg, resample="upsample" if i > 0 else None)
                                for i in levels)
        self.adaptive = nn.ModuleList(AdaptiveGroupNorm(cfg.z_channels, in_width[i], cfg) for i in levels)
        self.norm_out = _group_norm(widths[0], cfg)
        self.conv_out = nn.Conv2d(widths[0], 3, 3, padding=1)

    def forward(self, quant: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(quant)
        for block in self.mid_block:
            h = block(h)
        for i in reversed(range(len(self.up))):
            # Every level starts with an AdaptiveGroupNorm on the code planes themselves (the official
            # decoder's `style`, spec §3).
            h = self.up[i](self.adaptive[i](h, quant))
        return self.conv_out(swish(self.norm_out(h)))


def code_bits(num_bits: int, device=None) -> torch.Tensor:
    """(K,) weights 2^i: channel i is bit i of the code (little-endian, spec §1.3)."""
    return 2 ** torch.arange(num_bits, device=device, dtype=torch.long)


class LFQuantizer(nn.Module):
    """Sign quantisation with a straight-through estimator (spec §3). No parameters and no state."""

    def __init__(self, cfg: LFQConfig):
        super().__init__()
        self.cfg = cfg

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """z (B, K, h, w) -> straight-through +-1 planes (B, K, h, w), full codes (B, h, w), losses."""
        bits = z > 0  # exactly 0 -> bit 0 -> -1, as officially
        q = torch.where(bits, 1.0, -1.0).to(z.dtype)
        codes = (bits.long() * code_bits(z.shape[1], z.device)[:, None, None]).sum(1)  # (B, h, w)
        zero = z.new_zeros(())
        losses = {"entropy": zero, "per_sample_entropy": zero, "codebook_entropy": zero, "commit": zero}
        if self.training:  # the official LFQ returns zeros in eval mode
            losses.update(self.entropy_losses(z))
            losses["commit"] = F.mse_loss(z, q.detach())  # ||z - sg[q]||^2, mean over all elements
        return z + (q - z).detach(), codes, losses

    def entropy_losses(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """The official `entropy_loss`: per-position softmax over all 2^K codes of 2 z.c / T."""
        cfg = self.cfg
        B, K, h, w = z.shape
        z = z.permute(0, 2, 3, 1).reshape(B * h * w, K)  # (N, K)
        all_codes = self.planes(torch.arange(2 ** K, device=z.device)).to(z.dtype)  # (2^K, K)
        # 2 z.c = ||z||^2 + ||c||^2 - ||z - c||^2 + ..., i.e. minus the squared distance up to a row constant.
        logits = 2 * z @ all_codes.t() / cfg.entropy_temperature  # (N, 2^K)
        probs = logits.softmax(-1)
        # The official adds its eps (1e-5) to the scaled logits here and inside the log of the mean.
        sample_entropy = -(probs * (logits + 1e-5).log_softmax(-1)).sum(-1).mean()
        avg_probs = probs.mean(0)  # (2^K,)
        codebook_entropy = -(avg_probs * torch.log(avg_probs + 1e-5)).sum()
        # Low per-position entropy (confident codes), high batch entropy (all codes used).
        aux = cfg.sample_entropy_weight * sample_entropy - cfg.codebook_entropy_weight * codebook_entropy
        return {"entropy": aux, "per_sample_entropy": sample_entropy, "codebook_entropy": codebook_entropy}

    def planes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (...) -> +-1 bits (..., K), float32; for (B, h, w) use `lookup`."""
        weights = code_bits(self.cfg.z_channels, codes.device)
        return ((codes[..., None] & weights) != 0).float() * 2 - 1

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Full codes (B, h, w) -> +-1 planes (B, K, h, w): the official get_codebook_entry of pre and
        post, concatenated pre first (spec §1.6)."""
        return self.planes(codes).permute(0, 3, 1, 2)  # (B, h, w, K) -> (B, K, h, w)


class LFQModel(nn.Module):
    def __init__(self, config: LFQConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quantize = LFQuantizer(config)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def quantize_image(self, x: torch.Tensor):
        """x (B, 3, H, W) in [-1, 1] -> (quant (B, K, h, w), codes (B, h, w), quantizer losses)."""
        return self.quantize(self.encoder(x))

    def decode_quant(self, quant: torch.Tensor) -> torch.Tensor:
        """+-1 planes (B, K, h, w) -> image (B, 3, H, W), nominally in [-1, 1] (not clamped)."""
        return self.decoder(quant)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1] -> full codes (B, h, w), int64 in [0, 2^K)."""
        return self.quantize_image(x)[1]

    @torch.no_grad()
    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Full codes (B, h, w) -> images (B, 3, H, W), nominally in [-1, 1] (not clamped). Via the +-1
        planes, as Net2NetTransformer.decode_to_img does (the official decode_code is broken, spec §3)."""
        return self.decode_quant(self.quantize.lookup(indices).to(self.decoder.conv_in.weight.dtype))

    def split_codes(self, full: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """full = pre + post * 2^b0 -> (pre, post): the AR model's sub-tokens (spec §1.3)."""
        b0 = self.config.factorized_bits[0]
        return full & (2 ** b0 - 1), full >> b0

    def join_codes(self, pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
        return pre + (post << self.config.factorized_bits[0])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training step: reconstruction (B, 3, H, W) and the official generator loss without LPIPS/GAN."""
        quant, _, losses = self.quantize_image(x)
        recon = self.decode_quant(quant)
        losses["recon"] = (recon - x).abs().mean()  # official: L1 (pixelloss_weight 1)
        losses["loss"] = (losses["recon"] + self.config.entropy_weight * losses["entropy"]
                          + self.config.commit_weight * losses["commit"])
        return recon, losses


# --------------------------------------------------------------------------------------------------
# Checkpoints (spec §4)
# --------------------------------------------------------------------------------------------------
WEIGHTS_HINT = (
    "Open-MAGVIT2's tokenizer imagenet_256_L.ckpt is on huggingface.co/TencentARC/Open-MAGVIT2-Tokenizer-256-"
    "resolution; AR_256_{B,L,XL}.ckpt, which carry the tokenizer used for sampling, on "
    "huggingface.co/TencentARC/Open-MAGVIT2-AR-{B,L,XL}-256-resolution; ours come from training"
)


def _weights_hint(path: str | Path) -> str:
    """Where the named file comes from (the AR repo of its size, else every source)."""
    for size in ("B", "L", "XL"):
        if Path(path).name == f"AR_256_{size}.ckpt":
            return f"it is on huggingface.co/TencentARC/Open-MAGVIT2-AR-{size}-256-resolution"
    return WEIGHTS_HINT


def official_to_ours(state_dict: dict, model: LFQModel, use_ema: bool = False) -> dict:
    """An official state dict -> our names, dropping what an inference tokenizer does not use.

    AR layout (`AR_256_*.ckpt`): `first_stage_model.{encoder,decoder}.*` are the tokenizer the AR model
    was trained and sampled with; `transformer.*` is the generator (the AR family loads it) -> dropped.
    Tokenizer layout (`imagenet_256_L.ckpt`): `encoder.*`, `decoder.*`; dropped are `loss.*` (the
    discriminator and LPIPS: training-only) and the LitEma buffers `model_ema.decay`/`num_updates`
    and `model_ema.loss*` (EMA of the discriminator). The EMA copies of the weights are stored as
    `model_ema.<name with dots removed>` (spec §4). Default (use_ema=False): the raw weights, which the
    AR configs load (`use_ema: False`), so AR tokens and the AR files' decoders match them. use_ema=True:
    the EMA copies, which the official tokenizer evaluation (evaluation_image.py, `ema_scope`) reports.
    Every other key is kept, so strict loading reports it.
    """
    dropped: Counter = Counter()
    out, raw, ema = {}, {}, {}
    if any(k.startswith("first_stage_model.") for k in state_dict):
        if use_ema:
            raise ValueError("an AR checkpoint holds no EMA tokenizer weights: drop use_ema")
        for k, v in state_dict.items():
            if k.startswith("transformer."):
                dropped["transformer.* (the AR generator)"] += 1
            else:
                out[k.removeprefix("first_stage_model.")] = v
        _log_dropped(dropped)
        return out
    flat_names = {name.replace(".", ""): name for name in model.state_dict()}
    if len(flat_names) != len(model.state_dict()):  # e.g. down.1.block.11 vs down.11.block.1
        raise ValueError("EMA names are ambiguous for this config (dot-free names collide)")
    for k, v in state_dict.items():
        flat = k.removeprefix("model_ema.")
        if k.startswith("loss."):
            dropped["loss.* (discriminator / LPIPS, training-only)"] += 1
        elif k in ("model_ema.decay", "model_ema.num_updates") or (k != flat and flat.startswith("loss")):
            dropped["model_ema bookkeeping and discriminator EMA"] += 1
        elif k != flat and flat in flat_names:
            ema[flat_names[flat]] = v
        elif k.startswith(("encoder.", "decoder.")):
            raw[k] = v
        else:
            out[k] = v
    if use_ema and not ema:
        raise ValueError("this checkpoint has no model_ema.* weights: drop use_ema")
    kept, other = (ema, raw) if use_ema else (raw, ema)
    if other:
        dropped["raw weights (use_ema=True)" if use_ema else "model_ema.* weight copies (use_ema=False)"] += len(other)
    _log_dropped(dropped)
    return {**out, **kept}


def _log_dropped(dropped: Counter) -> None:
    for what, n in dropped.items():
        log.info("dropped %d keys: %s", n, what)


def load_lfq(path: str | Path, preset: str | None = None, device: str | torch.device = "cpu",
             use_ema: bool = False) -> LFQModel:
    """Build an LFQ tokenizer from a checkpoint and load it strictly; returns it in eval mode.

    Ours: `{"tokenizer": "lfq", "config": asdict(LFQConfig), "model": state_dict, ...}` (preset optional,
    must agree). Official `imagenet_256_L.ckpt` or `AR_256_{B,L,XL}.ckpt` (`{"state_dict": ...}`, no
    config) -> pass preset="LFQ-256"; see `official_to_ours` for what is dropped and `use_ema`.
    """
    ckpt = read_checkpoint(path, hint=_weights_hint(path))  # weights_only; missing file -> says where
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: expected a dict checkpoint")
    if preset is not None and preset not in LFQ_MODELS:
        raise ValueError(f"unknown LFQ preset {preset!r}; choose from {sorted(LFQ_MODELS)}")
    if "config" in ckpt:  # ours
        config = LFQConfig.from_dict(ckpt["config"])
        if preset is not None and LFQ_MODELS[preset] != config:
            raise ValueError(f"{path}: its stored config differs from preset {preset!r}; drop the preset")
        if use_ema and ckpt.get("ema") is None:
            raise ValueError(f"{path} has no EMA weights: drop use_ema")
        model = LFQModel(config)
        state_dict = extract_state_dict(ckpt["ema"] if use_ema else ckpt)
    elif preset is None:
        raise ValueError(f"{path} has no 'config' (an official Open-MAGVIT2 file?): pass preset='LFQ-256'")
    else:
        config = LFQ_MODELS[preset]
        model = LFQModel(config)
        state_dict = official_to_ours(extract_state_dict(ckpt), model, use_ema)
    load_state_dict_strict(model, state_dict, f"{path} (LFQ config {asdict(config)})")
    return model.to(device).eval()


def lfq_checkpoint(model: LFQModel, **extra) -> dict:
    """The dict `load_lfq` reads back: frozen config + state_dict (+ e.g. step)."""
    return {"tokenizer": "lfq", "config": asdict(model.config), "model": model.state_dict(), **extra}


__all__ = ["LFQ_MODELS", "WEIGHTS_HINT", "LFQConfig", "LFQModel", "lfq_checkpoint", "lfq_config", "load_lfq",
           "official_to_ours"]
