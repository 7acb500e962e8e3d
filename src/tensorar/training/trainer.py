"""The training loop: one loop for three modes (base, finetune, tensorar) and every backbone family,
data-parallel (DDP), preemption-safe and resumable. `tensorar train` (stages/train.py) documents the
command line; this module is the library behind it.
"""
from __future__ import annotations

import contextlib
import json
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from tensorar.checkpoint import load_state_dict_strict, read_checkpoint
from tensorar.data.codes import load_codes
from tensorar.data.conditions import open_conditions, training_data
from tensorar.distributed import DistInfo, all_reduce_mean, barrier, get_logger
from tensorar.fileio import (
    atomic_write_json,
    claim_for,
    content_id,
    exclusive_lock,
    identity_hash,
    remove_stale_temp_files,
)
from tensorar.models.backbone import Backbone, condition_to
from tensorar.models.loading import load_model, save_model
from tensorar.models.registry import family
from tensorar.models.tensorar import TensorAR, TensorARConfig
from tensorar.training.batches import derive_seed, global_batch, global_noise
from tensorar.training.checkpoints import (
    find_resume_checkpoint,
    prune_checkpoints,
    read_metrics,
    step_checkpoint_path,
    write_metrics,
)
from tensorar.training.options import MODES, TrainOptions

# Settings that never change what a step computes: a run resumes across changes to these (a longer
# --steps extends it); any other change, or other codes or another --init file, starts it afresh.
NOT_IDENTITY = ("steps", "ckpt_every", "keep_steps", "log_every")


@dataclass(frozen=True)
class RunSetup:
    """What is trained, on what, and where: the settings besides `TrainOptions`."""

    codes: str  # codes folder (tensorar extract_codes)
    run_dir: str
    mode: str  # base | finetune | tensorar
    family: str = "llamagen"  # backbone family (tensorar.models.registry)
    model: str | None = None  # preset (base mode; the official --init file's default preset)
    init: str | None = None  # base checkpoint of finetune / tensorar: ours or an official file
    init_preset: str | None = None
    plugin: TensorARConfig | None = None  # tensorar mode
    conditions: str | None = None  # text-image codes: the conditions folder (tensorar encode_captions)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r}: known {', '.join(MODES)}")

    def record(self, opts: TrainOptions) -> dict:
        """The flat settings saved in every checkpoint as "args"."""
        plugin = asdict(self.plugin) if self.plugin is not None else {}
        return {**{k: v for k, v in asdict(self).items() if k != "plugin"}, **plugin, **asdict(opts)}

    def identity(self, opts: TrainOptions, manifest: dict) -> dict:
        """What the run's weights are made of (docs/architecture.md, "Reruns"): every setting that changes
        a step, the codes' identity and the --init file's bytes (not its path)."""
        settings = {k: v for k, v in self.record(opts).items()
                    if k not in (*NOT_IDENTITY, "run_dir", "codes", "init", "conditions")}
        codes = manifest.get("identity") or identity_hash({k: v for k, v in manifest.items()
                                                           if k not in ("data", "tokenizer_path")})
        init = content_id(self.init) if self.init and Path(self.init).exists() else self.init
        conditions = None
        if self.conditions is not None:  # the encoder's identity and the captions', recorded by encode_captions
            conditions = json.loads((Path(self.conditions) / "conditions.json").read_text())["encoder"]
        return {"settings": settings, "codes": codes, "init_sha256": init, "conditions": conditions}


# --------------------------------------------------------------------------------------------------
# Model, optimizer, EMA
# --------------------------------------------------------------------------------------------------
def build_model(setup: RunSetup, opts: TrainOptions, manifest: dict, log) -> nn.Module:
    """A fresh model for `setup.mode`: a backbone from its preset, or the `--init` base (+ plug-in)."""
    fam = family(setup.family)
    h, w = manifest["grid"]
    sizes = {"vocab_size": manifest["vocab_size"], "num_tokens": h * w,
             "num_classes": manifest["num_classes"] if fam.condition == "class" else None}
    torch.manual_seed(opts.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    if setup.mode == "base":
        # The family's config takes the sizes it has fields for (Open-MAGVIT2's vocabulary follows from
        # its bit split); the built model must then fit the codes.
        config = fam.fit(setup.model, **sizes)
        model = fam.model_class(config if opts.dropout is None else fam.with_dropout(config, opts.dropout))
        if model.vocab_size != manifest["vocab_size"]:
            raise SystemExit(f"--model {setup.model} has a vocabulary of {model.vocab_size} tokens but the codes in "
                             f"{setup.codes} have {manifest['vocab_size']}: pick the preset made for that tokenizer")
        return model

    init = load_model(setup.init, setup.family, setup.init_preset or setup.model, block_size=h * w)
    if not isinstance(init, Backbone):
        raise SystemExit(f"--init {setup.init} is a {type(init).__name__} checkpoint; {setup.mode} mode starts "
                         "from a base model")
    if init.family != fam.name:
        raise SystemExit(f"--init {setup.init} holds a {init.family} model, not --family {fam.name}")
    if setup.model is not None and not fam.same_architecture(init.config, fam.config(setup.model)):
        raise SystemExit(f"--init {setup.init} is not a {setup.model} model (its architecture differs from the "
                         "preset's): name its own preset with --model")
    too_small = (init.num_tokens != h * w or init.vocab_size < manifest["vocab_size"]
                 or (fam.condition == "class" and init.num_classes < manifest["num_classes"]))
    if too_small:
        raise SystemExit(f"--init {setup.init} ({init.num_tokens} tokens, vocab {init.vocab_size}, "
                         f"{init.num_classes} classes) does not fit the codes in {setup.codes} ({sizes})")
    base = init
    if opts.dropout is not None:  # the rates live in the frozen config saved with the model: rebuild, copy weights
        base = fam.model_class(fam.with_dropout(init.config, opts.dropout))
        load_state_dict_strict(base, init.state_dict(), f"--init {setup.init}")
    log.info(f"{setup.mode}: base weights from {setup.init}")
    if setup.mode == "finetune":
        return base
    return TensorAR(base, setup.plugin)


def param_groups(model: nn.Module, lr_base: float, lr_plugin: float, weight_decay: float) -> list[dict]:
    """AdamW groups: (base, plug-in) x (>= 2-D weights decayed, norms/biases/1-D not)."""
    parts = [(model.base_parameters(), lr_base), (model.plugin_parameters(), lr_plugin)] \
        if isinstance(model, TensorAR) else [(model.parameters(), lr_base)]
    groups = []
    for params, lr in parts:
        params = [p for p in params if p.requires_grad]
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

    def forward(self, tokens: torch.Tensor, cond: dict, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.training_loss(tokens, cond, **kwargs)


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
    for tmp in remove_stale_temp_files(run_dir):
        log.info(f"removed {tmp}, a partial file left by a killed save")
    outputs = [run_dir / "checkpoints", run_dir / "final.pt", run_dir / "metrics.jsonl", run_dir / "train_config.json"]
    claim_for(run_dir, setup.identity(opts, manifest), outputs, log, "training run", logs=("train.log",))
    (run_dir / "checkpoints").mkdir(exist_ok=True)


def _train(setup: RunSetup, opts: TrainOptions, info: DistInfo, run_dir: Path) -> int:
    log = get_logger("train", info.is_main, str(run_dir / "train.log") if info.is_main else None)
    if opts.global_batch_size % info.world_size:
        raise SystemExit(f"--global-batch-size {opts.global_batch_size} is not divisible by the "
                         f"{info.world_size} processes")
    local_batch = opts.global_batch_size // info.world_size
    keep_steps = set(opts.keep_steps)
    record = setup.record(opts)

    codes, labels, manifest = load_codes(setup.codes)  # (N, A, T), (N,)
    conditions = open_conditions(labels, setup.conditions, manifest)  # batch(items) -> Condition
    data = training_data(manifest, conditions)  # recorded in every checkpoint, compared by the samplers
    if len(conditions) != len(codes):
        raise SystemExit(f"{setup.conditions} holds {len(conditions)} conditions but {setup.codes} {len(codes)} items")
    num_items, num_augmentations, num_tokens = codes.shape
    if info.is_main:
        claim_run_dir(setup, opts, manifest, run_dir, log)
    barrier()

    # Resume: rank 0 picks the checkpoint so every rank loads the same file.
    found = find_resume_checkpoint(run_dir, log, opts.steps) if info.is_main else None
    resume_path = [str(found[0]) if found else None]
    if dist.is_initialized():
        dist.broadcast_object_list(resume_path, src=0)
    history: list[dict] = []  # metrics.jsonl lines; saved in every checkpoint so a rerun keeps them
    if resume_path[0] is None:
        model, ckpt, start_step = build_model(setup, opts, manifest, log), None, 0
    else:
        ckpt = found[1] if found else read_checkpoint(resume_path[0])
        model, start_step = load_model(resume_path[0]), ckpt["step"]
        history = ckpt.get("metrics") or read_metrics(run_dir / "metrics.jsonl", start_step)
        log.info(f"resuming from {resume_path[0]} at step {start_step}")
    if info.is_main:
        write_metrics(run_dir / "metrics.jsonl", history)
    if start_step == opts.steps and resume_path[0] == str(run_dir / "final.pt"):
        log.info(f"{run_dir / 'final.pt'} already has --steps {opts.steps} steps: nothing to do")
        return 0

    device = info.device
    model.to(device).train()
    backbone = model.backbone
    condition_drop_prob = backbone.condition_dropout_prob

    opt = torch.optim.AdamW(param_groups(model, opts.lr_base, opts.lr_plugin, opts.weight_decay),
                            betas=(0.9, 0.95), fused=device.type == "cuda")
    ema = EMA(model, opts.ema_decay) if opts.ema_decay > 0 else None
    elapsed_before = 0.0
    if ckpt is not None:
        hyper = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
        opt.load_state_dict(ckpt["optimizer"])
        for group, current in zip(opt.param_groups, hyper):  # the moments resume; lr / decay follow the flags
            group.update(current)
        if ema is not None:
            if ckpt.get("ema") is None:
                raise SystemExit(f"{resume_path[0]} has no EMA weights but --ema-decay is {opts.ema_decay}")
            ema.state = {k: v.to(device) for k, v in ckpt["ema"].items()}
        elapsed_before = ckpt.get("elapsed_s", 0.0)
        del ckpt  # the optimizer state now lives in `opt`; free the CPU copy

    if info.is_main:
        n_params = sum(p.numel() for p in model.parameters())
        atomic_write_json(run_dir / "train_config.json", {
            "args": record, "world_size": info.world_size, "local_batch_size": local_batch,
            "family": backbone.family, "model_config": backbone.config.to_dict(),
            "plugin_config": model.plugin_config.to_dict() if isinstance(model, TensorAR) else None,
            "num_parameters": n_params, "resumed_from": resume_path[0], "start_step": start_step,
            "codes": {"num_items": num_items, "num_augmentations": num_augmentations, "num_tokens": num_tokens},
        })
        log.info(f"{setup.mode}: {n_params:,} parameters, {num_items} items x {num_augmentations} augmentations "
                 f"of {num_tokens} tokens, global batch {opts.global_batch_size} on {info.world_size} "
                 f"process(es), {device}")

    loss_module = _TrainingLoss(model)
    if info.enabled:
        loss_module = DDP(loss_module, device_ids=[device.index] if device.type == "cuda" else None,
                          broadcast_buffers=False)
    loss_kwargs = {}
    k = model.k  # tokens per TensorAR window (1 for a plain backbone)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    def save(step: int, path: Path) -> None:
        if info.is_main:
            save_model(path, model, ema=None if ema is None else ema.state, optimizer=opt.state_dict(), step=step,
                       data_position={"seed": opts.seed, "step": step, "global_batch_size": opts.global_batch_size,
                                      "samples_seen": step * opts.global_batch_size},
                       rng={"seed": opts.seed, "scheme": "every generator is reseeded from (seed, step[, rank])"},
                       elapsed_s=elapsed_before + time.time() - t_start, args=record, mode=setup.mode,
                       world_size=info.world_size, metrics=history, data=data)
            prune_checkpoints(run_dir, keep_steps)
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
            tokens = codes[items, augmentation].to(device, non_blocking=True)  # (b, T)
            cond = condition_to(conditions.batch(items), device)
            if condition_drop_prob > 0:  # the null condition for CFG, drawn for the whole global batch
                cond = backbone.drop_condition(cond, drop.to(device))
            # Dropout layers use the global RNG, reseeded from (seed, step, rank).
            torch.manual_seed(derive_seed(opts.seed, "dropout", step, info.rank))
            if setup.mode == "tensorar":
                noise = global_noise(step, opts.seed, opts.global_batch_size, codes.shape[-1], k)
                loss_kwargs["noise_uniforms"] = noise[rank_slice].to(device, non_blocking=True)  # (b, T-1, k, 2)
                if model.plugin_config.draft_source == "self":
                    drafts = global_noise(step, opts.seed, opts.global_batch_size, codes.shape[-1], k,
                                          backbone.token_parts, "drafts")
                    loss_kwargs["draft_uniforms"] = drafts[rank_slice].to(device, non_blocking=True)  # (b, T-1, k, P)
            warmup = min(1.0, (step + 1) / opts.warmup_steps) if opts.warmup_steps else 1.0
            for group in opt.param_groups:
                group["lr"] = group["peak_lr"] * warmup

            with autocast:
                loss, per_slot = loss_module(tokens, cond, **loss_kwargs)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), opts.grad_clip if opts.grad_clip > 0
                                                       else float("inf"))
            # One all-reduce for the logged numbers and the stop flag, so every rank stops at the same step.
            stats = all_reduce_mean(torch.cat([loss.detach().float()[None], per_slot.float().to(device),
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
                if info.is_main:
                    with open(run_dir / "metrics.jsonl", "a") as f:
                        f.write(json.dumps(line) + "\n")
                bar.set_postfix(loss=f"{mean[0]:.4f}")
                window, window_steps, t_window = None, 0, now
            if stats[-1] > 0:
                signum = stop.signum or signal.SIGTERM  # a rank that saw no signal stops with its peers
                save(done, step_checkpoint_path(run_dir, done))
                log.info(f"preempted by {signal.Signals(signum).name} at step {done}: saved "
                         f"{step_checkpoint_path(run_dir, done)}; run the same command again to resume")
                return 128 + signum
            if done % opts.ckpt_every == 0 or done in keep_steps:
                save(done, step_checkpoint_path(run_dir, done))
    save(opts.steps, run_dir / "final.pt")
    log.info(f"done: {opts.steps} steps -> {run_dir / 'final.pt'}")
    return 0
