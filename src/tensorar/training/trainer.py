"""The training loop: one loop for three modes (base, finetune, tensorar) and every backbone family,
data-parallel (DDP) or sharded (FSDP, tensorar.training.sharding), with gradient accumulation over
micro-batches, preemption-safe and resumable. `tensorar train` (stages/train.py) documents the
command line; this module is the library behind it.
"""
from __future__ import annotations

import contextlib
import json
import signal
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor
from tqdm import tqdm

from tensorar.checkpoint import load_state_dict_strict
from tensorar.data.codes import CodeStore
from tensorar.data.conditions import open_conditions
from tensorar.distributed import DistInfo, all_reduce_mean, barrier, get_logger
from tensorar.fileio import (
    atomic_write_json,
    claim_for,
    exclusive_lock,
    remove_stale_temp_files,
)
from tensorar.models.backbone import condition_slice, condition_to
from tensorar.models.tensorar import TensorAR
from tensorar.training.batches import derive_seed, global_batch, global_noise
from tensorar.training.build import EMA, RunSetup, build_model, model_from_configs, param_groups
from tensorar.training.checkpoints import (
    find_resume_checkpoint,
    finished_run,
    prune_checkpoints,
    read_metrics,
    read_training_state,
    remove_partial_checkpoint_folders,
    step_checkpoint_path,
    write_metrics,
)
from tensorar.training.options import TrainOptions
from tensorar.training.sharding import gradient_sync, shard_model
from tensorar.training.state import (
    MASTER_DTYPE,
    check_master_dtype,
    load_sharded,
    save_consolidated,
    save_full,
    save_sharded,
)

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
def train(setup: RunSetup, opts: TrainOptions, info: DistInfo) -> int:
    """Run (or resume) training; returns the process exit status (0, or 128 + signal when preempted).
    Rank 0 holds the run directory's lock throughout, so a second trainer in it fails at once."""
    run_dir = Path(setup.run_dir)
    with contextlib.ExitStack() as held:
        if info.is_main:
            held.enter_context(exclusive_lock(run_dir, "training job"))
        return _train(setup, opts, info, run_dir)


def claim_run_dir(setup: RunSetup, opts: TrainOptions, manifest: dict, run_dir: Path, log) -> None:
    """Rank 0: drop partial writes of killed saves, and a previous run's outputs unless that run had this
    run's identity (then it resumes)."""
    for tmp in [*remove_stale_temp_files(run_dir), *remove_partial_checkpoint_folders(run_dir)]:
        log.info(f"removed {tmp}, a partial write left by a killed save")
    outputs = [run_dir / "checkpoints", run_dir / "final.pt", run_dir / "metrics.jsonl", run_dir / "train_config.json"]
    claim_for(run_dir, setup.identity(opts, manifest), outputs, log, "training run")
    (run_dir / "checkpoints").mkdir(exist_ok=True)


def micro_batches(local_batch: int, micro_batch_size: int) -> list[slice]:
    """The per-process batch cut into micro-batches of `micro_batch_size` (0: one of the whole batch)."""
    size = micro_batch_size or local_batch
    if local_batch % size:
        raise SystemExit(f"--micro-batch-size {size} does not divide the per-process batch of {local_batch} "
                         "samples (--global-batch-size / processes)")
    return [slice(start, start + size) for start in range(0, local_batch, size)]


def broadcast_from_main(value):
    """Rank 0's `value` on every rank (itself in a single process)."""
    box = [value]
    if dist.is_initialized():
        dist.broadcast_object_list(box, src=0)
    return box[0]


def _train(setup: RunSetup, opts: TrainOptions, info: DistInfo, run_dir: Path) -> int:
    log = get_logger("train", info.is_main, str(run_dir / "train.log") if info.is_main else None)
    if opts.global_batch_size % info.world_size:
        raise SystemExit(f"--global-batch-size {opts.global_batch_size} is not divisible by the "
                         f"{info.world_size} processes")
    local_batch = opts.global_batch_size // info.world_size
    chunks = micro_batches(local_batch, opts.micro_batch_size)
    keep_steps = set(opts.keep_steps)
    record = setup.record(opts)
    sharded = opts.strategy == "fsdp"

    codes = CodeStore(setup.codes)  # memory maps of the shards: each rank reads only its batch rows
    manifest = codes.manifest
    conditions = open_conditions(codes.labels, setup.conditions)  # batch(items) -> Condition
    if len(conditions) != len(codes):
        raise SystemExit(f"{setup.conditions} holds {len(conditions)} conditions but {setup.codes} {len(codes)} items")
    num_items, num_augmentations, num_tokens = codes.shape
    if info.is_main:
        claim_run_dir(setup, opts, manifest, run_dir, log)
    barrier()

    # A complete run rewrites metrics.jsonl from final.pt's history and stops.
    finished = finished_run(run_dir, opts.steps) if info.is_main else None
    if broadcast_from_main(finished is not None):
        if info.is_main:
            write_metrics(run_dir / "metrics.jsonl", finished.get("metrics") or [])
        log.info(f"{run_dir / 'final.pt'} already has --steps {opts.steps} steps: nothing to do")
        return 0
    # Resume: rank 0 picks the checkpoint so every rank loads the same one.
    found = find_resume_checkpoint(run_dir, log, opts.steps, sharded) if info.is_main else None
    resume_path = broadcast_from_main(str(found[0]) if found else None)
    history: list[dict] = []  # metrics.jsonl lines; saved in every checkpoint so a rerun keeps them
    if resume_path is None:
        model, ckpt, start_step = build_model(setup, opts, manifest, log), None, 0
    else:
        ckpt = found[1] if found else read_training_state(Path(resume_path))
        check_master_dtype(ckpt, resume_path)
        model = model_from_configs(ckpt)
        if not sharded:  # a sharded state is loaded into the sharded model below
            load_state_dict_strict(model, ckpt["model"], resume_path)
        start_step = ckpt["step"]
        history = ckpt.get("metrics") or read_metrics(run_dir / "metrics.jsonl", start_step)
        log.info(f"resuming from {resume_path} at step {start_step}")
    if info.is_main:
        write_metrics(run_dir / "metrics.jsonl", history)

    device = info.device
    model.to(device).train()
    backbone = model.backbone
    condition_drop_prob = backbone.condition_dropout_prob
    # fp32 master weights; compute in bf16 on CUDA (autocast, and FSDP's all-gathered copies), fp32 on CPU.
    compute_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    loss_module = shard_model(model, opts.strategy, opts.activation_checkpointing, compute_dtype)
    opt = torch.optim.AdamW(param_groups(model, opts.lr_base, opts.lr_plugin, opts.weight_decay),
                            betas=(0.9, 0.95), fused=device.type == "cuda")
    ema = EMA(model, opts.ema_decay) if opts.ema_decay > 0 else None
    elapsed_before = 0.0
    if ckpt is not None:
        if ema is not None and ckpt.get("ema") is None:
            raise SystemExit(f"{resume_path} has no EMA weights but --ema-decay is {opts.ema_decay}")
        hyper = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
        if sharded:
            load_sharded(Path(resume_path), model, opt, ema)
        else:
            opt.load_state_dict(ckpt["optimizer"])
            if ema is not None:
                ema.state = {k: v.to(device) for k, v in ckpt["ema"].items()}
        for group, current in zip(opt.param_groups, hyper):  # the moments resume; lr / decay follow the flags
            group.update(current)
        elapsed_before = ckpt.get("elapsed_s", 0.0)
        del ckpt  # the optimizer state now lives in `opt`; free the CPU copy

    if info.is_main:
        n_params = sum(p.numel() for p in model.parameters())
        atomic_write_json(run_dir / "train_config.json", {
            "args": record, "world_size": info.world_size, "local_batch_size": local_batch,
            "micro_batches": len(chunks), "family": backbone.family, "model_config": backbone.config.to_dict(),
            "plugin_config": model.plugin_config.to_dict() if isinstance(model, TensorAR) else None,
            "num_parameters": n_params, "resumed_from": resume_path, "start_step": start_step,
            "param_dtype": MASTER_DTYPE, "compute_dtype": str(compute_dtype).removeprefix("torch."),
            "codes": {"num_items": num_items, "num_augmentations": num_augmentations, "num_tokens": num_tokens},
        })
        log.info(f"{setup.mode}: {n_params:,} parameters, {num_items} items x {num_augmentations} augmentations "
                 f"of {num_tokens} tokens, global batch {opts.global_batch_size} on {info.world_size} "
                 f"process(es) ({opts.strategy}, {len(chunks)} micro-batch(es) each), {device}")

    loss_kwargs = {}
    tensor_size = model.window_size  # tokens per TensorAR input tensor (1 for a plain backbone)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    def save(step: int, final: bool = False) -> None:
        extra = dict(step=step, data_position={"seed": opts.seed, "step": step,
                                               "global_batch_size": opts.global_batch_size,
                                               "samples_seen": step * opts.global_batch_size},
                     rng={"seed": opts.seed, "scheme": "every generator is reseeded from (seed, step[, rank])"},
                     elapsed_s=elapsed_before + time.time() - t_start, args=record, mode=setup.mode,
                     world_size=info.world_size, metrics=history, param_dtype=MASTER_DTYPE, strategy=opts.strategy)
        if sharded:  # the sharded state resumes (also a longer --steps); final.pt is for sampling
            path = step_checkpoint_path(run_dir, step, sharded=True)
            if not (final and path.is_dir()):  # the last step's folder may be saved already
                save_sharded(path, model, opt, ema, extra, info)
            if final:
                save_consolidated(run_dir / "final.pt", model, ema, extra, info)
        else:
            save_full(run_dir / "final.pt" if final else step_checkpoint_path(run_dir, step), model, opt, ema,
                      extra, info)
        if info.is_main:
            prune_checkpoints(run_dir, keep_steps, sharded)
        barrier()

    rank_slice = slice(info.rank * local_batch, (info.rank + 1) * local_batch)
    window, window_steps, t_start = None, 0, time.time()
    t_window = t_start
    bar = tqdm(range(start_step, opts.steps), initial=start_step, total=opts.steps, desc=f"train {setup.mode}",
               disable=not info.is_main, dynamic_ncols=True)
    with StopRequest() as stop:
        for step in bar:
            items, augmentation, drop = global_batch(step, opts.seed, opts.global_batch_size, num_items,
                                                     num_augmentations, condition_drop_prob)
            items, augmentation, drop = items[rank_slice], augmentation[rank_slice], drop[rank_slice]
            tokens = codes.take(items, augmentation).to(device, non_blocking=True)  # (b, T)
            cond = condition_to(conditions.batch(items), device)
            if condition_drop_prob > 0:  # the null condition for CFG, drawn for the whole global batch
                cond = backbone.drop_condition(cond, drop.to(device))
            # Dropout layers use the global RNG, reseeded from (seed, step, rank); micro-batches draw in turn.
            torch.manual_seed(derive_seed(opts.seed, "dropout", step, info.rank))
            if setup.mode == "tensorar":
                noise = global_noise(step, opts.seed, opts.global_batch_size, num_tokens, tensor_size)
                loss_kwargs["noise_uniforms"] = noise[rank_slice].to(device, non_blocking=True)  # (b, T-1, k, 2)
                if model.plugin_config.draft_source == "self":
                    drafts = global_noise(step, opts.seed, opts.global_batch_size, num_tokens, tensor_size,
                                          backbone.token_parts, "drafts")
                    loss_kwargs["draft_uniforms"] = drafts[rank_slice].to(device, non_blocking=True)  # (b, T-1, k, P)
            warmup = min(1.0, (step + 1) / opts.warmup_steps) if opts.warmup_steps else 1.0
            for group in opt.param_groups:
                group["lr"] = group["peak_lr"] * warmup

            # Gradient accumulation: each micro-batch's mean loss weighted by its share of the batch sums
            # to the batch's mean loss (every sample has the same number of targets).
            opt.zero_grad(set_to_none=True)
            loss, per_slot = 0.0, 0.0
            for i, chunk in enumerate(chunks):
                share = (chunk.stop - chunk.start) / local_batch
                with gradient_sync(loss_module, last_micro_batch=i == len(chunks) - 1):
                    with autocast:
                        part, part_per_slot = loss_module(tokens[chunk], condition_slice(cond, chunk),
                                                          **{k: v[chunk] for k, v in loss_kwargs.items()})
                    (part * share).backward()
                loss, per_slot = loss + part.detach() * share, per_slot + part_per_slot.float() * share
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), opts.grad_clip if opts.grad_clip > 0
                                                       else float("inf"))
            if isinstance(grad_norm, DTensor):  # FSDP: the norm over every rank's shards
                grad_norm = grad_norm.full_tensor()
            # One all-reduce for the logged numbers and the stop flag, so every rank stops at the same step.
            stats = all_reduce_mean(torch.cat([loss.float()[None], per_slot.to(device),
                                               grad_norm.float()[None].to(device),
                                               torch.tensor([float(stop.signum > 0)], device=device)]))
            if not torch.isfinite(stats[0]):
                raise SystemExit(f"tensorar train: non-finite loss ({stats[0].item()}) at step {step + 1}; "
                                 f"stopping before the optimizer step. Checkpoints in {run_dir / 'checkpoints'} "
                                 "are intact; lower the learning rate or check the codes.")
            opt.step()
            if ema is not None:
                ema.update(model)

            done = step + 1
            window = stats[:-1] if window is None else window + stats[:-1]
            window_steps += 1
            if done % opts.log_every == 0 or done == opts.steps or stats[-1] > 0:
                now = time.time()
                mean = (window / window_steps).tolist()
                line = {"step": done, "loss": mean[0], "per_slot_loss": mean[1:-1], "grad_norm": mean[-1],
                        "lr_base": opts.lr_base * warmup,
                        "lr_plugin": opts.lr_plugin * warmup if setup.mode == "tensorar" else None,
                        "tokens_per_s": window_steps * opts.global_batch_size * num_tokens / (now - t_window),
                        "elapsed_s": elapsed_before + now - t_start}
                history.append(line)
                if info.is_main:  # progress while it runs; the whole file is rewritten at the end
                    with open(run_dir / "metrics.jsonl", "a") as f:
                        f.write(json.dumps(line) + "\n")
                bar.set_postfix(loss=f"{mean[0]:.4f}")
                window, window_steps, t_window = None, 0, now
            if stats[-1] > 0:
                signum = stop.signum or signal.SIGTERM  # a rank that saw no signal stops with its peers
                save(done)
                log.info(f"preempted by {signal.Signals(signum).name} at step {done}: saved "
                         f"{step_checkpoint_path(run_dir, done, sharded)}; run the same command again to resume")
                return 128 + signum
            if done % opts.ckpt_every == 0 or done in keep_steps:
                save(done)
    save(opts.steps, final=True)
    if info.is_main:
        write_metrics(run_dir / "metrics.jsonl", history)
    log.info(f"done: {opts.steps} steps -> {run_dir / 'final.pt'}")
    return 0
