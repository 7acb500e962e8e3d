"""Train a class-conditional AR model on VQ token codes: one loop for three modes, DDP, resumable.

    python -m tensorar.train --codes CODES/ --run-dir RUN/ --mode base --model GPT-toy-S --lr-base 1e-3
    python -m tensorar.train --codes CODES/ --run-dir RUN/ --mode tensorar --init BASE.pt --k 4 --depth 1
    python -m tensorar.train --codes CODES/ --run-dir RUN/ --mode finetune --init BASE.pt

Modes:
- `base`: a GPT from scratch; the preset comes from `--model`, vocab / classes / token grid from the
  codes manifest.
- `tensorar`: the `--init` base GPT wrapped with the next-tensor plug-in (`--k --depth --schedule
  --loss-weighting`) and fine-tuned; the plug-in learns at `--lr-plugin`, the base at `--lr-base`.
- `finetune`: the equal-steps control of the paper's Fig. 5: the same base, data, steps and `--lr-base`
  as the TensorAR run, without the plug-in. It separates "more training" from "next-tensor prediction".
`--init` is one of our checkpoints or an official LlamaGen file (`--init-preset GPT-B`, default `--model`).

Recipe (the paper's defaults): AdamW betas (0.9, 0.95), weight decay 0.05 on >= 2-D weights only, lr 1e-4
for plug-in modules and 1e-5 for base weights (`--lr-base` applies to base weights in every mode, so a
from-scratch config sets it higher), constant lr after an optional linear warm-up, 10 % class-label
drop (the GPT config's class_dropout_prob, for CFG), grad-norm clip 1.0, bf16 autocast on CUDA (fp32 on
CPU), optional EMA (`--ema-decay`). A non-finite loss stops the run before the optimizer step.

Reproducibility: every random choice is a pure function of (seed, step). For step s, a generator seeded
from (seed, s) picks the global batch (epoch-wise permutations of the items, an augmentation index per
sample) and the class-label drop mask; rank r trains on the r-th contiguous slice. The same
`--global-batch-size` therefore trains the same way on any number of processes (up to float reduction
order, with `--dropout 0`), and a resumed run continues exactly where it stopped. The TensorAR input
noise is drawn for the whole global batch from (seed, step) too. Dropout layers draw from the global RNG
reseeded from (seed, step, rank): exact on resume, but dependent on the world size.

Outputs in RUN/: `train_config.json`, `metrics.jsonl` (rank 0: step, loss, per-slot losses, lr, grad
norm, tokens/s, elapsed), `train.log`, `checkpoints/step_XXXXXXX.pt` (every `--ckpt-every` steps and at
each of `--keep-steps`; others are pruned down to the latest two) and `final.pt`. Every checkpoint is
written atomically and holds the model (`tensorar.checkpoint.load_model` rebuilds it: GPT or TensorAR),
its configs, EMA weights, optimizer, step, data position and args.

Preemption: SIGTERM or SIGUSR1 -> the current step finishes, a checkpoint is saved, and the process
exits with status 128 + signal number (143 for SIGTERM), like a process killed by that signal, so
`&&` chains and workflow engines see an unfinished run. Running the same command again in the same
run dir resumes from the newest complete checkpoint (a truncated one is skipped, and the log says so);
a run whose `final.pt` already has `--steps` steps returns at once. In Snakemake, declare `RUN/final.pt`
(not `directory(RUN)`) as the output so a failed or preempted job keeps its checkpoints.

Multi-node SLURM (one torchrun per node, rendezvous on the first host of the allocation):

    #!/bin/bash
    #SBATCH --nodes=2 --ntasks-per-node=1 --gpus-per-node=8 --cpus-per-task=32
    #SBATCH --time=24:00:00 --requeue --signal=TERM@180
    head=$(scontrol show hostnames "$SLURM_NODELIST" | head -n 1)
    srun torchrun --nnodes "$SLURM_NNODES" --nproc_per_node 8 \
        --rdzv_id "$SLURM_JOB_ID" --rdzv_backend c10d --rdzv_endpoint "$head:29500" \
        -m tensorar.train --codes CODES/ --run-dir RUN/ --mode tensorar --init c2i_B_256.pt --model GPT-B

`--signal=TERM@180` sends SIGTERM to the job steps 3 minutes before the time limit; torchrun forwards
SIGTERM (not SIGUSR1) to its workers, which then checkpoint. `--requeue` restarts preempted jobs; after
a time limit, submit the same script again (or let Snakemake's `--retries` do it) to resume.

Toy sizing: digits has ~1,437 train images x 20 augmentations with an 8x8 token grid. At batch 64
(vocab 512), a GPT-toy-S step (3 layers, d=64) costs ~160 ms of CPU time on one thread, a TensorAR k=4
step ~2.5x that (k slot losses under activation checkpointing). On a CPU shared with other jobs, run one
thread per process (OMP_NUM_THREADS=1): OpenMP threads that wait for each other slow it down many-fold.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import signal
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from tensorar.checkpoint import load_model, load_state_dict_strict, read_checkpoint, save_model
from tensorar.distributed import DistInfo, all_reduce_mean, barrier, cleanup_distributed, get_logger, init_distributed
from tensorar.fileio import atomic_write_json, atomic_write_text
from tensorar.models.gpt import GPT, gpt_config
from tensorar.models.next_tensor import TensorAR, TensorARConfig
from tensorar.schedules import LOSS_WEIGHTINGS, SCHEDULES

MODES = ("base", "finetune", "tensorar")
# Training-state keys a resumable checkpoint must hold (besides the model written by model_checkpoint).
_STATE_KEYS = ("optimizer", "step", "data_position", "args")
# Changing these between a checkpoint and its resumption would change the model or the data order.
_RESUME_INVARIANTS = ("mode", "model", "init", "seed", "global_batch_size", "k", "depth", "schedule",
                      "loss_weighting", "dropout")


# --------------------------------------------------------------------------------------------------
# Data: the global batch of step s is a pure function of (seed, s)
# --------------------------------------------------------------------------------------------------
def read_codes(codes_dir: str | Path) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """codes (N, A, T) int64, labels (N,) int64, manifest (written by `tensorar.extract_codes`)."""
    from tensorar.extract_codes import load_codes

    return load_codes(codes_dir)


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed that is a pure function of `parts` (Python's str hash is salted per process)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@functools.lru_cache(maxsize=2)  # a global batch spans at most two epochs unless it exceeds the data
def _epoch_permutation(seed: int, epoch: int, num_items: int) -> torch.Tensor:
    return torch.randperm(num_items, generator=torch.Generator().manual_seed(derive_seed(seed, "epoch", epoch)))


def global_batch(step: int, seed: int, batch_size: int, num_items: int, num_augmentations: int,
                 class_drop_prob: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Step -> (item index, augmentation index, label-drop mask), each (batch_size,), for the whole world.

    Items are visited without replacement, epoch by epoch: sample j of step s is position s*B + j of
    the stream formed by concatenating one random permutation of the items per epoch.
    """
    positions = torch.arange(step * batch_size, (step + 1) * batch_size)
    epochs = positions // num_items
    items = torch.empty_like(positions)
    for epoch in epochs.unique().tolist():
        at = epochs == epoch
        items[at] = _epoch_permutation(seed, epoch, num_items)[positions[at] % num_items]
    gen = torch.Generator().manual_seed(derive_seed(seed, "batch", step))
    augmentation = torch.randint(num_augmentations, (batch_size,), generator=gen)
    drop = torch.rand(batch_size, generator=gen) < class_drop_prob
    return items, augmentation, drop


def global_noise(step: int, seed: int, batch_size: int, num_tokens: int, tensor_size: int) -> torch.Tensor:
    """TensorAR's input-noise draws (mask, replacement) of step `step` for the whole world:
    (batch_size, num_tokens - 1, tensor_size, 2). Each rank takes its slice, as with `global_batch`."""
    gen = torch.Generator().manual_seed(derive_seed(seed, "noise", step))
    return torch.rand(batch_size, num_tokens - 1, tensor_size, 2, generator=gen)


# --------------------------------------------------------------------------------------------------
# Model, optimizer, EMA
# --------------------------------------------------------------------------------------------------
def build_model(args: argparse.Namespace, manifest: dict, log) -> nn.Module:
    """A fresh model for `args.mode`: GPT from the preset, or the `--init` base (+ plug-in)."""
    h, w = manifest["grid"]
    data_fields = {"vocab_size": manifest["vocab_size"], "num_classes": manifest["num_classes"], "block_size": h * w}
    dropout = {} if args.dropout is None else dict.fromkeys(("token_dropout_p", "resid_dropout_p", "ffn_dropout_p"),
                                                          args.dropout)
    torch.manual_seed(args.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    if args.mode == "base":
        return GPT(gpt_config(args.model, **data_fields, **dropout))

    init = load_model(args.init, preset=args.init_preset or args.model, block_size=h * w)
    if not isinstance(init, GPT):
        raise SystemExit(f"--init {args.init} is a {type(init).__name__} checkpoint; {args.mode} mode starts "
                         "from a base GPT")
    cfg = init.config
    if (cfg.block_size != h * w or cfg.vocab_size < manifest["vocab_size"]
            or cfg.num_classes < manifest["num_classes"]):
        raise SystemExit(f"--init {args.init} (block_size {cfg.block_size}, vocab {cfg.vocab_size}, "
                         f"{cfg.num_classes} classes) does not fit the codes in {args.codes} ({data_fields})")
    base = init
    if dropout:  # the rates live in the frozen config saved with the model: rebuild, then copy the weights
        base = GPT(replace(cfg, **dropout))
        load_state_dict_strict(base, init.state_dict(), f"--init {args.init}")
    log.info(f"{args.mode}: base weights from {args.init}")
    if args.mode == "finetune":
        return base
    plugin = TensorARConfig(k=args.k, depth=args.depth, schedule=args.schedule, loss_weighting=args.loss_weighting)
    return TensorAR(base, plugin)


def base_model(model: nn.Module) -> GPT:
    return model if isinstance(model, GPT) else model.base


def param_groups(model: nn.Module, lr_base: float, lr_plugin: float, weight_decay: float) -> list[dict]:
    """AdamW groups: (base, plug-in) x (>= 2-D weights decayed, norms/biases/1-D not)."""
    parts = [(model.base_parameters(), lr_base), (model.plugin_parameters(), lr_plugin)] \
        if isinstance(model, TensorAR) else [(model.parameters(), lr_base)]
    groups = []
    for params, lr in parts:
        params = list(params)
        for decay in (True, False):
            chosen = [p for p in params if (p.dim() >= 2) == decay]
            if chosen:
                groups.append({"params": chosen, "lr": lr, "peak_lr": lr, "weight_decay": weight_decay * decay})
    return groups


class EMA:
    """Exponential moving average of a model's state dict, in fp32 (buffers are copied, not averaged)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.state = {k: v.detach().clone().float() if v.is_floating_point() else v.detach().clone()
                      for k, v in model.state_dict().items()}
        self._params = {name for name, _ in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for name, value in model.state_dict().items():
            if name in self._params:
                self.state[name].lerp_(value.float(), 1.0 - self.decay)
            else:
                self.state[name].copy_(value)


class _TrainingLoss(nn.Module):
    """DDP synchronises the gradients of what runs inside forward(): route `training_loss` through it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.training_loss(tokens, labels, **kwargs)


# --------------------------------------------------------------------------------------------------
# Checkpoints: find the newest complete one, save atomically, prune
# --------------------------------------------------------------------------------------------------
def step_checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:07d}.pt"


def _checkpoint_step(path: Path) -> int:
    return int(path.stem.split("_")[1])


def find_resume_checkpoint(run_dir: Path, log) -> tuple[Path, dict] | None:
    """The newest checkpoint that loads and holds a training state: final.pt, then step_* newest first.

    A file that fails to load (truncated by a full disk, a partial copy, ...) is skipped with a warning.
    """
    candidates = sorted((run_dir / "checkpoints").glob("step_*.pt"), key=_checkpoint_step, reverse=True)
    if (run_dir / "final.pt").is_file():
        candidates.insert(0, run_dir / "final.pt")
    for path in candidates:
        try:
            ckpt = read_checkpoint(path)
            missing = [k for k in ("model", "model_config", *_STATE_KEYS) if k not in ckpt]
            if missing:
                raise KeyError(f"no {', '.join(missing)}")
        except Exception as err:  # any unreadable file means "not a complete checkpoint": try the previous
            log.warning(f"ignoring incomplete or corrupt checkpoint {path} ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''}); trying the previous one")
            continue
        return path, ckpt
    return None


def prune_checkpoints(run_dir: Path, keep_steps: set[int], keep_latest: int = 2) -> None:
    paths = sorted((run_dir / "checkpoints").glob("step_*.pt"), key=_checkpoint_step)
    for path in paths[:-keep_latest]:
        if _checkpoint_step(path) not in keep_steps:
            path.unlink()


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop metric lines logged after the checkpoint being resumed (they are trained again)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= last_step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError):  # a line cut short by the kill
            continue
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))


class StopRequest:
    """Record SIGTERM / SIGUSR1 so the loop can finish its step, checkpoint and exit."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self):
        self.signum = 0
        self._previous = {}

    def __enter__(self) -> "StopRequest":
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------
def train(args: argparse.Namespace, info: DistInfo) -> int:
    """Run (or resume) training; returns the process exit status (0, or 128 + signal when preempted)."""
    run_dir = Path(args.run_dir)
    if info.is_main:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    barrier()
    log = get_logger("train", info.is_main, str(run_dir / "train.log") if info.is_main else None)
    if args.global_batch_size % info.world_size:
        raise SystemExit(f"--global-batch-size {args.global_batch_size} is not divisible by the "
                         f"{info.world_size} processes")
    local_batch = args.global_batch_size // info.world_size
    keep_steps = set(args.keep_steps)

    codes, labels, manifest = read_codes(args.codes)  # (N, A, T), (N,)
    num_items, num_augmentations, num_tokens = codes.shape

    # Resume: rank 0 picks the checkpoint so every rank loads the same file.
    found = find_resume_checkpoint(run_dir, log) if info.is_main else None
    resume_path = [str(found[0]) if found else None]
    if dist.is_initialized():
        dist.broadcast_object_list(resume_path, src=0)
    if resume_path[0] is None:
        model, ckpt, start_step = build_model(args, manifest, log), None, 0
    else:
        ckpt = found[1] if found else read_checkpoint(resume_path[0])
        changed = {k: (ckpt["args"].get(k), vars(args)[k]) for k in _RESUME_INVARIANTS
                   if ckpt["args"].get(k) != vars(args)[k]}
        if changed:
            raise SystemExit(f"{run_dir} holds a run with other settings {changed} (checkpoint, now): "
                             "use a new --run-dir")
        model, start_step = load_model(resume_path[0]), ckpt["step"]
        log.info(f"resuming from {resume_path[0]} at step {start_step}")
    if start_step >= args.steps and resume_path[0] == str(run_dir / "final.pt"):
        log.info(f"{run_dir / 'final.pt'} already has {start_step} >= --steps {args.steps} steps: nothing to do")
        return 0
    if start_step > args.steps:
        raise SystemExit(f"{resume_path[0]} is at step {start_step}, past --steps {args.steps}")

    device = info.device
    model.to(device).train()
    # The loop draws the class-label drop mask from the (seed, step) generator for the whole global batch,
    # so turn off the embedder's own draw (its null-class row stays: the table size is fixed at build).
    class_drop_prob = base_model(model).config.class_dropout_prob
    base_model(model).cls_embedding.dropout_prob = 0.0
    null_class = base_model(model).config.num_classes

    opt = torch.optim.AdamW(param_groups(model, args.lr_base, args.lr_plugin, args.weight_decay),
                            betas=(0.9, 0.95), fused=device.type == "cuda")
    ema = EMA(model, args.ema_decay) if args.ema_decay > 0 else None
    elapsed_before = 0.0
    if ckpt is not None:
        hyper = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
        opt.load_state_dict(ckpt["optimizer"])
        for group, current in zip(opt.param_groups, hyper):  # the moments resume; lr / decay follow the flags
            group.update(current)
        if ema is not None:
            if ckpt.get("ema") is None:
                raise SystemExit(f"{resume_path[0]} has no EMA weights but --ema-decay is {args.ema_decay}")
            ema.state = {k: v.to(device) for k, v in ckpt["ema"].items()}
        elapsed_before = ckpt.get("elapsed_s", 0.0)
        del ckpt  # the optimizer state now lives in `opt`; free the CPU copy

    if info.is_main:
        truncate_metrics(run_dir / "metrics.jsonl", start_step)
        n_params = sum(p.numel() for p in model.parameters())
        atomic_write_json(run_dir / "train_config.json", {
            "args": vars(args), "world_size": info.world_size, "local_batch_size": local_batch,
            "model_config": base_model(model).config.to_dict(),
            "plugin_config": model.plugin_config.to_dict() if isinstance(model, TensorAR) else None,
            "num_parameters": n_params, "resumed_from": resume_path[0], "start_step": start_step,
            "codes": {"num_items": num_items, "num_augmentations": num_augmentations, "num_tokens": num_tokens},
        })
        log.info(f"{args.mode}: {n_params:,} parameters, {num_items} items x {num_augmentations} augmentations "
                 f"of {num_tokens} tokens, global batch {args.global_batch_size} on {info.world_size} "
                 f"process(es), {device}")

    loss_module = _TrainingLoss(model)
    if info.enabled:
        loss_module = DDP(loss_module, device_ids=[device.index] if device.type == "cuda" else None,
                          broadcast_buffers=False)
    loss_kwargs = {}
    tensor_size = model.plugin_config.k if args.mode == "tensorar" else 1  # tokens per TensorAR input tensor
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    def save(step: int, path: Path) -> None:
        if info.is_main:
            save_model(path, model, ema=None if ema is None else ema.state, optimizer=opt.state_dict(), step=step,
                       data_position={"seed": args.seed, "step": step, "global_batch_size": args.global_batch_size,
                                      "samples_seen": step * args.global_batch_size},
                       rng={"seed": args.seed, "scheme": "every generator is reseeded from (seed, step[, rank])"},
                       elapsed_s=elapsed_before + time.time() - t_start, args=vars(args), mode=args.mode,
                       world_size=info.world_size)
            prune_checkpoints(run_dir, keep_steps)
        barrier()

    rank_slice = slice(info.rank * local_batch, (info.rank + 1) * local_batch)
    window, window_steps, t_start = None, 0, time.time()
    t_window = t_start
    bar = tqdm(range(start_step, args.steps), initial=start_step, total=args.steps, desc=f"train {args.mode}",
               disable=not info.is_main, dynamic_ncols=True)
    with StopRequest() as stop:
        for step in bar:
            items, augmentation, drop = global_batch(step, args.seed, args.global_batch_size, num_items,
                                                     num_augmentations, class_drop_prob)
            items, augmentation, drop = items[rank_slice], augmentation[rank_slice], drop[rank_slice]
            tokens = codes[items, augmentation].to(device, non_blocking=True)  # (b, T)
            y = torch.where(drop, null_class, labels[items]).to(device, non_blocking=True)  # (b,)
            # Dropout layers use the global RNG, reseeded from (seed, step, rank).
            torch.manual_seed(derive_seed(args.seed, "dropout", step, info.rank))
            if args.mode == "tensorar":
                noise = global_noise(step, args.seed, args.global_batch_size, codes.shape[-1], tensor_size)
                loss_kwargs["noise_uniforms"] = noise[rank_slice].to(device, non_blocking=True)  # (b, T-1, k, 2)
            warmup = min(1.0, (step + 1) / args.warmup_steps) if args.warmup_steps else 1.0
            for group in opt.param_groups:
                group["lr"] = group["peak_lr"] * warmup

            with autocast:
                loss, per_slot = loss_module(tokens, y, **loss_kwargs)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip if args.grad_clip > 0
                                                       else float("inf"))
            # One all-reduce for the logged numbers and the stop flag, so every rank stops at the same step.
            stats = all_reduce_mean(torch.cat([loss.detach().float()[None], per_slot.float().to(device),
                                               grad_norm.float()[None].to(device),
                                               torch.tensor([float(stop.signum > 0)], device=device)]))
            if not torch.isfinite(stats[0]):
                raise SystemExit(f"tensorar.train: non-finite loss ({stats[0].item()}) at step {step + 1}; "
                                 f"stopping before the optimizer step. Checkpoints in {run_dir / 'checkpoints'} "
                                 "are intact; lower the learning rate or check the codes.")
            opt.step()
            if ema is not None:
                ema.update(model)

            done = step + 1
            window = stats[:-1] if window is None else window + stats[:-1]
            window_steps += 1
            if done % args.log_every == 0 or done == args.steps or stats[-1] > 0:
                now = time.time()
                mean = (window / window_steps).tolist()
                record = {"step": done, "loss": mean[0], "per_slot_loss": mean[1:-1], "grad_norm": mean[-1],
                          "lr_base": args.lr_base * warmup,
                          "lr_plugin": args.lr_plugin * warmup if args.mode == "tensorar" else None,
                          "tokens_per_s": window_steps * args.global_batch_size * num_tokens / (now - t_window),
                          "elapsed_s": elapsed_before + now - t_start}
                if info.is_main:
                    with open(run_dir / "metrics.jsonl", "a") as f:
                        f.write(json.dumps(record) + "\n")
                bar.set_postfix(loss=f"{mean[0]:.4f}")
                window, window_steps, t_window = None, 0, now
            if stats[-1] > 0:
                signum = stop.signum or signal.SIGTERM  # a rank that saw no signal stops with its peers
                save(done, step_checkpoint_path(run_dir, done))
                log.info(f"preempted by {signal.Signals(signum).name} at step {done}: saved "
                         f"{step_checkpoint_path(run_dir, done)}; run the same command again to resume")
                return 128 + signum
            if done % args.ckpt_every == 0 or done in keep_steps:
                save(done, step_checkpoint_path(run_dir, done))
    save(args.steps, run_dir / "final.pt")
    log.info(f"done: {args.steps} steps -> {run_dir / 'final.pt'}")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tensorar train", description=__doc__.split("\n")[0])
    parser.add_argument("--codes", required=True, help="codes directory written by tensorar.extract_codes")
    parser.add_argument("--run-dir", required=True, help="outputs and checkpoints; rerun to resume")
    parser.add_argument("--mode", required=True, choices=MODES)
    parser.add_argument("--model", help="GPT preset (required for --mode base), e.g. GPT-toy-S, GPT-B")
    parser.add_argument("--init", help="base checkpoint for finetune / tensorar: ours or an official LlamaGen file")
    parser.add_argument("--init-preset", help="preset of an official LlamaGen --init file (default: --model)")
    plug = parser.add_argument_group("TensorAR plug-in (--mode tensorar)")
    plug.add_argument("--k", type=int, default=4, help="tokens per tensor (window size)")
    plug.add_argument("--depth", type=int, default=1, help="plug-in depth")
    plug.add_argument("--schedule", default="exponential", choices=sorted(SCHEDULES), help="input noise schedule")
    plug.add_argument("--loss-weighting", default="rdm", choices=LOSS_WEIGHTINGS, help="per-slot loss weights")
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps in total (not per restart)")
    parser.add_argument("--global-batch-size", type=int, default=64, help="summed over all processes")
    parser.add_argument("--lr-base", type=float, default=1e-5, help="lr of the base GPT weights (every mode)")
    parser.add_argument("--lr-plugin", type=float, default=1e-4, help="lr of the plug-in modules")
    parser.add_argument("--warmup-steps", type=int, default=0, help="linear lr warm-up from 0 (0: none)")
    parser.add_argument("--weight-decay", type=float, default=0.05, help="on >= 2-D weights only")
    parser.add_argument("--grad-clip", type=float, default=1.0, help="max grad norm (0: no clipping)")
    parser.add_argument("--ema-decay", type=float, default=0.0, help="EMA of the weights (0: off), e.g. 0.9999")
    parser.add_argument("--dropout", type=float, help="set the token/resid/ffn dropout (default: the preset's "
                                                      "or the --init model's)")
    parser.add_argument("--ckpt-every", type=int, default=1000, help="checkpoint every N steps")
    parser.add_argument("--keep-steps", type=lambda s: [int(x) for x in s.split(",") if x], default=[],
                        help="comma-separated steps whose checkpoints are always saved and never pruned")
    parser.add_argument("--log-every", type=int, default=10, help="metrics.jsonl line every N steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = parser.parse_args(argv)
    if args.mode == "base" and not args.model:
        parser.error("--mode base needs --model PRESET")
    if args.mode != "base" and not args.init:
        parser.error(f"--mode {args.mode} needs --init BASE_CHECKPOINT")
    for flag in ("steps", "global_batch_size", "ckpt_every", "log_every"):
        if getattr(args, flag) < (0 if flag == "steps" else 1):
            parser.error(f"--{flag.replace('_', '-')} must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    info = init_distributed(args.device)
    status = train(args, info)
    cleanup_distributed()
    if status:
        raise SystemExit(status)


if __name__ == "__main__":
    main()
