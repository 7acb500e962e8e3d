"""Draft-copying diagnostics for a TensorAR checkpoint (ours; not in the paper).

The risk: in training, position 1 of the input window x_{t,k} holds the clean next token x_{t+1} with
probability 1 - β(1), and x_{t+1} is exactly slot 0's target. Slot 0 can therefore learn to copy it.
At sampling time that position holds a *draft* (sampled one step earlier from less context), so a model
that copies commits its drafts unrefined. A pilot on the toy digits model found TensorAR (linear
schedule) far worse than the equal-steps fine-tune control, which this diagnoses.

Reported on held-out token data (augmentation 0 of a codes directory):
- slot-0 (and every slot's) cross-entropy with the draft positions 1..k-1 of every input window
  `clean` (the true tokens), `train_noise` (resampled at rate β(j), as in training) and `random`
  (all resampled). Clean far below the base NLL, and random far above it, means slot 0 reads the answer
  off its input instead of predicting it;
- `base_nll`: the base model's next-token NLL on the same tokens (the no-draft reference);
- during sampling (`--num-samples`, seeded): `copy_rate`, the fraction of steps whose committed token
  equals the draft it was fed at position 1, and `draft_agreement[j-1]`, the same for the draft of that
  token fed j steps earlier at position j. Reported for the paper's sampler (`draft_noise="none"`) and
  for ours (`"schedule"`).

    tensorar diagnose --ckpt RUN/final.pt --base BASE/final.pt --codes CODES_VAL/ --out DIAG.json
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, replace

import torch
from tqdm import tqdm

from tensorar.data.codes import load_codes
from tensorar.data.conditions import open_conditions
from tensorar.decoding.sampling import DRAFT_NOISE, SamplingOptions
from tensorar.errors import run_stage
from tensorar.fileio import atomic_write_json
from tensorar.models.backbone import (
    PAD,
    Backbone,
    condition_slice,
    condition_to,
)
from tensorar.models.tensorar import TensorAR
from tensorar.options import add_arguments, from_arguments
from tensorar.sampling.options import DiagnoseOptions, ModelSource, RunOptions

DRAFT_CONDITIONS = ("clean", "train_noise", "random")


def condition_inputs(model: TensorAR, windows: torch.Tensor, condition: str, generator: torch.Generator):
    """Clean input windows (B, L, k) -> the windows with drafts (positions 1..k-1) under `condition`."""
    if condition == "clean":
        return windows
    uniforms = torch.rand(*windows.shape, 2, generator=generator, device=windows.device)  # (B, L, k, 2)
    if condition == "random":
        uniforms[..., 0] = 0.0  # a mask draw of 0 resamples every position with β(j) > 0, i.e. j >= 1
    return model.noise_windows(windows, uniforms=uniforms)


@torch.no_grad()
def slot_cross_entropy(
    model: TensorAR, codes: torch.Tensor, conditions, batch_size: int, seed: int, show: bool
) -> dict[str, list[float]]:
    """Mean cross-entropy (nats/token) of every slot over its non-PAD targets, per draft condition."""
    device = next(model.parameters()).device
    totals = {c: torch.zeros(model.k, dtype=torch.float64, device=device) for c in DRAFT_CONDITIONS}
    counts = torch.zeros(model.k, dtype=torch.float64, device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    for start in tqdm(range(0, len(codes), batch_size), desc="slot CE", disable=not show):
        tokens = codes[start : start + batch_size].to(device)  # (B, T)
        cond = condition_to(conditions.batch(slice(start, start + len(tokens))), device)
        targets = model.windows(tokens)  # (B, T, k)
        counts += (targets != PAD).sum((0, 1))
        for condition in DRAFT_CONDITIONS:
            inputs = condition_inputs(model, targets[:, :-1], condition, generator)  # (B, T-1, k)
            slot_hidden = model.slot_hidden_states(inputs, cond)  # (B, T, k, D)
            for s in range(model.k):  # one slot's logits at a time
                totals[condition][s] += model.base.token_loss(slot_hidden[:, :, s], targets[..., s], "sum")
    return {c: (totals[c] / counts).tolist() for c in DRAFT_CONDITIONS}


@torch.no_grad()
def base_nll(base: Backbone, codes: torch.Tensor, conditions, batch_size: int, show: bool) -> float:
    """The base model's mean next-token NLL (nats/token) on the same tokens."""
    device = next(base.parameters()).device
    total = torch.zeros((), dtype=torch.float64, device=device)
    for start in tqdm(range(0, len(codes), batch_size), desc="base NLL", disable=not show):
        tokens = codes[start : start + batch_size].to(device)  # (B, T)
        cond = condition_to(conditions.batch(slice(start, start + len(tokens))), device)
        hidden = base.hidden_states(base.embed_tokens(tokens[:, :-1]), cond)  # (B, T, D)
        total += base.token_loss(hidden, tokens, "sum")
    return (total / codes.numel()).item()


@torch.no_grad()
def draft_agreement(model: TensorAR, conditions, num_samples: int, seed: int, batch_size: int,
                    options: SamplingOptions, show: bool) -> dict:
    """Sample `num_samples` images and measure how often the committed token equals the draft of it fed
    j = 1..k-1 steps earlier (at position j of the input window). Class-conditional backbones cycle over
    the classes; others over the held-out items' conditions."""
    device = next(model.parameters()).device
    backbone = model.backbone
    T, k = backbone.num_tokens, model.k
    g = torch.Generator().manual_seed(seed)
    # Drawn for all samples up front on the CPU: the result does not depend on the batch size.
    uniforms = torch.rand(num_samples, T, k, backbone.token_parts, generator=g)
    noise = torch.rand(num_samples, T, k, 2, generator=g)
    if backbone.num_classes is not None:
        sample_conditions = {"labels": torch.arange(num_samples) % backbone.num_classes}
    else:
        sample_conditions = conditions.batch(torch.arange(num_samples) % len(conditions))
    agree = torch.zeros(k - 1, dtype=torch.float64)
    for start in tqdm(range(0, num_samples, batch_size), desc=f"sampling ({options.draft_noise})", disable=not show):
        rows = slice(start, start + batch_size)
        _, drafts = model.generate(
            condition_to(condition_slice(sample_conditions, rows), device), options,
            uniforms=uniforms[rows].to(device), noise_uniforms=noise[rows].to(device), return_drafts=True,
        )  # (B, T, k)
        for j in range(1, k):
            # Token i was committed at step i (slot 0) and drafted at step i - j (slot j).
            agree[j - 1] += (drafts[:, j:, 0] == drafts[:, :-j, j]).sum().item()
    rates = (agree / torch.tensor([num_samples * (T - j) for j in range(1, k)], dtype=torch.float64)).tolist()
    return {"copy_rate": rates[0] if rates else None, "draft_agreement": rates}


def check_compatible(model, base, codes: torch.Tensor, ckpt: str, base_path: str) -> None:
    if not isinstance(model, TensorAR):
        raise ValueError(f"--ckpt {ckpt} is a {type(model).__name__} checkpoint, not a TensorAR one")
    if not isinstance(base, Backbone):
        raise ValueError(f"--base {base_path} is a {type(base).__name__} checkpoint, not a base model")
    ours = model.backbone
    for name in ("family", "vocab_size", "num_classes", "num_tokens"):
        if getattr(ours, name) != getattr(base, name):
            raise ValueError(f"{name} differs: TensorAR {getattr(ours, name)} vs base {getattr(base, name)}")
    if codes.shape[1] != ours.num_tokens or int(codes.max()) >= ours.vocab_size:
        raise ValueError(
            f"codes of length {codes.shape[1]} with ids up to {int(codes.max())} do not fit a model with "
            f"{ours.num_tokens} tokens and vocab_size {ours.vocab_size}"
        )


def diagnose(model: TensorAR, base: Backbone, codes: torch.Tensor, conditions, num_samples: int,
             seed: int, batch_size: int, options: SamplingOptions, show: bool = True) -> dict:
    """All diagnostics as a JSON-ready dict (codes (N, T) long, conditions of N items)."""
    ce = slot_cross_entropy(model, codes, conditions, batch_size, seed, show)
    return {
        "plugin_config": model.plugin_config.to_dict(),
        "beta": model.beta.tolist(),
        "slot_weights": model.slot_weight.tolist(),
        "num_items": len(codes),
        "base_nll": base_nll(base, codes, conditions, batch_size, show),
        "slot0_ce": {c: values[0] for c, values in ce.items()},
        "per_slot_ce": ce,
        "num_samples": num_samples,
        "sampling_config": {k: v for k, v in asdict(options).items() if k != "draft_noise"},
        "sampling": {
            mode: draft_agreement(model, conditions, num_samples, seed, batch_size, replace(options, draft_noise=mode),
                                  show)
            for mode in DRAFT_NOISE
        },
        "seed": seed,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tensorar diagnose", description=__doc__.split("\n\n")[0])
    model = p.add_argument_group("the TensorAR checkpoint (ours; ModelSource: --family, --preset and "
                                 "--block-size describe an official --base file)")
    add_arguments(model, ModelSource, skip=("vq", "vq_preset"))
    add_arguments(p.add_argument_group("inputs and samples (DiagnoseOptions)"), DiagnoseOptions)
    add_arguments(p.add_argument_group("run (RunOptions)"), RunOptions, skip=("dtype", "tf32"))
    p.add_argument("--out", required=True, help="output JSON")
    add_arguments(p.add_argument_group("token sampling (SamplingOptions; both draft-noise modes are run)"),
                  SamplingOptions, skip=("draft_noise",))
    return p


def main(argv: list[str] | None = None) -> None:
    p = build_parser()
    args = p.parse_args(argv)
    options = from_arguments(p, args, SamplingOptions)
    source, run = from_arguments(p, args, ModelSource), from_arguments(p, args, RunOptions)
    opts = from_arguments(p, args, DiagnoseOptions)
    device = run.torch_device()

    codes, labels, manifest = load_codes(opts.codes)  # (N, A, T), (N,)
    conditions = open_conditions(labels[: opts.max_items], opts.conditions, manifest)  # items beyond max_items unused
    codes = torch.as_tensor(codes[: opts.max_items, 0]).long()  # (N, T): augmentation 0
    model = ModelSource(ckpt=source.ckpt, ema=source.ema).load_model(device)
    base = replace(source, ckpt=opts.base, ema=False).load_model(device)
    check_compatible(model, base, codes, source.ckpt, opts.base)
    result = diagnose(model, base, codes, conditions, opts.num_samples, opts.seed, run.batch_size, options)
    result.update(ckpt=source.ckpt, base=opts.base, codes=opts.codes)
    atomic_write_json(args.out, result)
    print(
        f"slot-0 CE clean {result['slot0_ce']['clean']:.4f} / train noise {result['slot0_ce']['train_noise']:.4f} / "
        f"random drafts {result['slot0_ce']['random']:.4f}; base NLL {result['base_nll']:.4f}; "
        f"copy rate {result['sampling']['none']['copy_rate']}"
    )


if __name__ == "__main__":
    run_stage(main)
