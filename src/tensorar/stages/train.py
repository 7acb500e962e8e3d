"""Train an AR image backbone on token codes: one loop for three modes, any backbone family, DDP or FSDP, resumable.

    python -m tensorar train --codes CODES/ --run-dir RUN/ --mode base --preset GPT-toy-S --lr-base 1e-3
    python -m tensorar train --codes CODES/ --run-dir RUN/ --mode tensorar --init BASE.pt --k 4 --depth 1
    python -m tensorar train --codes CODES/ --run-dir RUN/ --mode finetune --init BASE.pt

Modes:
- `base`: a GPT from scratch; the preset comes from `--preset`, vocab / classes / token grid from the
  codes manifest.
- `tensorar`: the `--init` base GPT wrapped with the next-tensor plug-in (`--k --depth --schedule
  --loss-weighting`) and fine-tuned; the plug-in learns at `--lr-plugin`, the base at `--lr-base`.
- `finetune`: the equal-steps control of the paper's Fig. 5: the same base, data, steps and `--lr-base`
  as the TensorAR run, without the plug-in. It separates "more training" from "next-tensor prediction".
`--init` is one of our checkpoints or an official file of `--family` and `--preset` (e.g. GPT-B; `--init-preset`
when its architecture is not the preset's).
The optimisation flags are the fields of `tensorar.training.options.TrainOptions`, the plug-in flags
those of `TensorARConfig`; `--help` lists them with their defaults. The loop: tensorar/training/trainer.py.

Recipe (the paper's defaults): AdamW betas (0.9, 0.95), weight decay 0.05 on >= 2-D weights only, lr 1e-4
for plug-in modules and 1e-5 for base weights (`--lr-base` applies to base weights in every mode, so a
from-scratch config sets it higher), constant lr after an optional linear warm-up, 10 % class-label
dropout (the backbone's condition_dropout_prob, for CFG), grad-norm clip 1.0, bf16 autocast on CUDA (fp32 on
CPU), optional EMA (`--ema-decay`). A non-finite loss stops the run before the optimizer step.

Memory (ours; the same global batch and results up to float reduction order): `--strategy ddp` keeps a
full replica per process; `--strategy fsdp` shards parameters, gradients and optimizer states over the
processes, transformer block by block (FSDP2, tensorar.training.sharding), fp32 master weights with bf16
compute on CUDA; `--activation-checkpointing` recomputes each block's activations in the backward pass;
`--micro-batch-size M` runs the per-process batch M samples at a time and accumulates the gradients.
`--strategy fsdp` also runs in one process (a process group of one). Codes are read from their shard
files as memory maps (tensorar.data.codes.CodeStore): each process holds only its batch.

Reproducibility: every random choice is a pure function of (seed, step). For step s, a generator seeded
from (seed, s) picks the global batch (epoch-wise permutations of the items, an augmentation index per
sample) and the class-label drop mask; rank r trains on the r-th contiguous slice. The same
`--global-batch-size` therefore trains the same way on any number of processes (up to float reduction
order, with `--dropout 0`), and a resumed run continues exactly where it stopped. The TensorAR input
noise is drawn for the whole global batch from (seed, step) too. Dropout layers draw from the global RNG
reseeded from (seed, step, rank): exact on resume, but dependent on the world size and micro-batches.

Outputs in RUN/: `train_config.json`, `metrics.jsonl` (rank 0: step, loss, per-slot losses, lr, grad
norm, tokens/s, elapsed; appended while training, rewritten whole from the history at the end and by
any rerun that finds the run complete), `train.log`, `checkpoints/step_XXXXXXX.pt` (every `--ckpt-every`
steps and at each of `--keep-steps`; others are pruned down to the latest two) and `final.pt`. Every
checkpoint is written atomically and holds the model (`tensorar.models.loading.load_model` rebuilds it:
GPT or TensorAR), its configs, EMA weights, optimizer, step, data position, settings, loss history and
the master weights' dtype (fp32; a resume keeps it). Under FSDP the step checkpoints are folders,
`checkpoints/step_XXXXXXX/` (torch.distributed.checkpoint: every rank writes its shards, a rerun on
any number of processes reads them resharded; written under a temporary name and renamed when
complete), and `final.pt` is consolidated on rank 0 into the same file format, without the optimizer.

Preemption: SIGTERM or SIGUSR1 -> the current step finishes, a checkpoint is saved, and the process
exits with status 128 + signal number (143 for SIGTERM), like a process killed by that signal, so
`&&` chains and workflow engines see an unfinished run. Running the same command again in the same
run dir resumes from the newest complete checkpoint (a truncated one is skipped, and the log says so);
a run whose `final.pt` already has `--steps` steps returns at once. In Snakemake, declare `RUN/final.pt`
(not `directory(RUN)`) as the output so a failed or preempted job keeps its checkpoints.

Multi-node SLURM (one torchrun per node) and the toy's sizing: docs/slurm.md.
"""
from __future__ import annotations

import argparse

from tensorar.distributed import cleanup_distributed, init_distributed
from tensorar.errors import run_stage
from tensorar.models.tensorar import TensorARConfig
from tensorar.options import add_arguments, from_arguments
from tensorar.sampling.options import RunOptions
from tensorar.training.options import TrainOptions, TrainSource
from tensorar.training.build import RunSetup
from tensorar.training.trainer import train


def parse_args(argv: list[str] | None = None) -> tuple[RunSetup, TrainOptions, str]:
    parser = argparse.ArgumentParser(prog="tensorar train", description=__doc__.split("\n")[0])
    parser.add_argument("--codes", required=True, help="codes directory written by tensorar extract_codes")
    parser.add_argument("--run-dir", required=True, help="outputs and checkpoints; rerun to resume")
    add_arguments(parser.add_argument_group("what is trained (TrainSource)"), TrainSource)
    # Training sets its own precision (fp32 masters, bf16 autocast and TF32 on CUDA) and batch (TrainOptions).
    add_arguments(parser.add_argument_group("placement (RunOptions)"), RunOptions, skip=("dtype", "batch_size", "tf32"))
    add_arguments(parser.add_argument_group("TensorAR plug-in (--mode tensorar)"), TensorARConfig)
    add_arguments(parser.add_argument_group("optimisation (TrainOptions)"), TrainOptions)
    args = parser.parse_args(argv)
    source = from_arguments(parser, args, TrainSource)
    plugin = from_arguments(parser, args, TensorARConfig) if source.mode == "tensorar" else None
    setup = RunSetup(codes=args.codes, run_dir=args.run_dir, mode=source.mode, family=source.family,
                     model=source.preset, init=source.init, init_preset=source.init_preset, plugin=plugin,
                     conditions=source.conditions)
    return setup, from_arguments(parser, args, TrainOptions), from_arguments(parser, args, RunOptions).device


def main(argv: list[str] | None = None) -> None:
    setup, opts, device = parse_args(argv)
    info = init_distributed(device, group=opts.strategy == "fsdp")
    status = train(setup, opts, info)
    cleanup_distributed()
    if status:
        raise SystemExit(status)


if __name__ == "__main__":
    run_stage(main)
