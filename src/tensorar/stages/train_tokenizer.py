"""Train a small image tokenizer on an ImageFolder: the toy stand-ins for LlamaGen's VQ-16 (`VQ-toy`)
and Open-MAGVIT2's LFQ (`LFQ-toy`).

    python -m tensorar train_tokenizer --data DIR/train --val-data DIR/val --out TOK.pt [--preset VQ-toy]

Objective: the tokenizer family's own loss without LPIPS/GAN (tensorar.models.vq: LlamaGen's VQ loss;
tensorar.models.lfq: Open-MAGVIT2's L1 + entropy + commitment), AdamW with LlamaGen's tokenizer
betas/weight decay, cosine learning-rate decay, random horizontal flips (extract_codes encodes flipped
views too). The whole (small) dataset is held in memory. VQ codes unused for a while are re-seeded from
encoder outputs (ours); LFQ has no codebook to revive (its entropy loss keeps codes in use).

Writes `TOK.pt` (ours, read by tensorar.models.loading.load_tokenizer) and, next to it, `TOK.json` with
the validation reconstruction MSE (pixels in [-1, 1]), PSNR, codebook usage (fraction of codes used on
the val set) and code perplexity, plus the training time.
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from tensorar.data.imagefolder import load_all
from tensorar.distributed import get_logger
from tensorar.errors import run_stage
from tensorar.fileio import atomic_torch_save, atomic_write_json
from tensorar.models.registry import tokenizer_family
from tensorar.models.vq import VQModel
from tensorar.options import add_arguments, from_arguments
from tensorar.training.options import TokenizerSetup, TokenizerTrainOptions


def latent_vectors(model: VQModel, x: torch.Tensor) -> torch.Tensor:
    """Encoder outputs as the quantizer sees them: (B*h*w, D), l2-normalised if the codebook is."""
    z = model.quant_conv(model.encoder(x))  # (B, D, h, w)
    z = z.permute(0, 2, 3, 1).flatten(0, 2)  # (B*h*w, D)
    return F.normalize(z, dim=-1) if model.config.codebook_l2_norm else z


@torch.no_grad()
def reset_codes(model: VQModel, opt: torch.optim.Optimizer, codes: torch.Tensor, x: torch.Tensor,
                gen: torch.Generator) -> None:
    """Ours (not in LlamaGen): move `codes` onto randomly chosen current encoder outputs.

    At toy scale a VQ easily ends up with most codes never selected ("dead"): they receive no codebook
    gradient and stay dead. Initialising the codebook from encoder outputs and re-seeding codes that went
    unused keeps the whole vocabulary in play. Their AdamW moments are zeroed so stale momentum does not
    drag them straight back.
    """
    z = latent_vectors(model, x)
    pick = torch.randint(len(z), (len(codes),), generator=gen, device="cpu").to(z.device)
    weight = model.quantize.embedding.weight
    weight[codes] = z[pick]
    state = opt.state.get(weight, {})
    for name in ("exp_avg", "exp_avg_sq"):
        if name in state:
            state[name][codes] = 0


@torch.no_grad()
def evaluate(model: VQModel, images: torch.Tensor, batch_size: int) -> dict:
    """Reconstruction MSE through the discrete bottleneck (encode -> indices -> decode) and code usage."""
    model.eval()
    sq_err, counts = 0.0, torch.zeros(model.config.codebook_size, dtype=torch.long)
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size]
        indices = model.encode(x)  # (B, h, w)
        sq_err += F.mse_loss(model.decode(indices), x, reduction="sum").item()
        counts += torch.bincount(indices.flatten().cpu(), minlength=model.config.codebook_size)
    model.train()
    mse = sq_err / images.numel()
    p = counts[counts > 0].double() / counts.sum()
    return {
        "val_recon_mse": mse,
        "val_psnr_db": 10 * math.log10(4.0 / mse),  # peak-to-peak range of [-1, 1] pixels is 2
        "codebook_usage": (counts > 0).float().mean().item(),
        "codebook_perplexity": math.exp(-(p * p.log()).sum().item()),
        "codebook_size": model.config.codebook_size,
        "num_val_images": len(images),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tensorar train_tokenizer", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="ImageFolder with training images")
    parser.add_argument("--val-data", required=True, help="ImageFolder with held-out images")
    parser.add_argument("--out", required=True, help="checkpoint path, e.g. TOK.pt (TOK.json is written beside)")
    add_arguments(parser.add_argument_group("tokenizer (TokenizerSetup)"), TokenizerSetup)
    add_arguments(parser.add_argument_group("training (TokenizerTrainOptions)"), TokenizerTrainOptions)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup = from_arguments(parser, args, TokenizerSetup)
    opts = from_arguments(parser, args, TokenizerTrainOptions)

    log = get_logger("train_tokenizer")
    torch.manual_seed(opts.seed)
    gen = torch.Generator().manual_seed(opts.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    family = tokenizer_family(setup.preset)
    config = family.presets[setup.preset]
    if setup.image_size % config.downsample:
        parser.error(f"--image-size must be a multiple of the downsampling factor {config.downsample}")
    train_x, _ = load_all(args.data, setup.image_size)  # (N, 3, S, S) in [-1, 1]
    val_x, _ = load_all(args.val_data, setup.image_size)
    train_x, val_x = train_x.to(device), val_x.to(device)
    model = family.model_class(config).to(device).train()
    revive = isinstance(model, VQModel) and opts.restart_every > 0  # dead-code restarts: VQ codebooks only
    log.info(f"{setup.preset}: {model.num_parameters():,} parameters; {len(train_x)} train / {len(val_x)} val "
             f"images of {setup.image_size}px -> {setup.image_size // config.downsample}^2 tokens")

    # LlamaGen's tokenizer optimiser settings (betas 0.9/0.95, weight decay 0.05); higher lr for a short run.
    opt = torch.optim.AdamW(model.parameters(), lr=opts.lr, betas=(0.9, 0.95), weight_decay=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / opts.steps)))

    def batch() -> torch.Tensor:
        idx = torch.randint(len(train_x), (opts.batch_size,), generator=gen).to(device)
        x = train_x[idx]  # (B, 3, S, S)
        flip = (torch.rand(opts.batch_size, generator=gen) < 0.5).to(device)
        return torch.where(flip[:, None, None, None], x.flip(-1), x)

    all_codes = torch.arange(config.codebook_size, device=device)
    if revive:
        reset_codes(model, opt, all_codes, batch(), gen)  # ours: codebook initialised from encoder outputs
    start = time.time()
    for step in (bar := tqdm(range(1, opts.steps + 1), desc="train_tokenizer", dynamic_ncols=True)):
        x = batch()
        _, losses = model(x)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        opt.step()
        sched.step()
        # Restarts stop for the last fifth of training so the final codebook and decoder agree.
        if revive and step % opts.restart_every == 0 and step < 0.8 * opts.steps:
            used = model.quantize.codebook_used.long().unique()
            dead = all_codes[~torch.isin(all_codes, used)]
            if len(dead):
                reset_codes(model, opt, dead, x, gen)
        if step % 10 == 0 or step == opts.steps:
            bar.set_postfix(recon=f"{losses['recon'].item():.4f}")
    train_seconds = time.time() - start

    metrics = evaluate(model, val_x, batch_size=256)
    metrics.update(preset=setup.preset, steps=opts.steps, train_seconds=round(train_seconds, 1),
                   num_parameters=model.num_parameters(), final_train_recon=losses["recon"].item())
    out = Path(args.out)
    checkpoint = {"tokenizer": family.name, "config": asdict(config), "model": model.cpu().state_dict(),
                  "step": opts.steps, "args": vars(args)}
    atomic_torch_save(checkpoint, out)
    atomic_write_json(out.with_suffix(".json"), metrics)
    log.info(f"trained in {train_seconds:.0f}s: val recon MSE {metrics['val_recon_mse']:.4f} "
             f"(PSNR {metrics['val_psnr_db']:.1f} dB), codebook usage {metrics['codebook_usage']:.2f}, "
             f"perplexity {metrics['codebook_perplexity']:.0f} -> {out}")


if __name__ == "__main__":
    run_stage(main)
