"""Train an AR image backbone on token codes: one loop for three modes, any backbone family, DDP, resumable.

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
`--init` is one of our checkpoints or an official file of `--family` (`--init-preset GPT-B`, default `--model`).
The optimisation flags are the fields of `tensorar.training.options.TrainOptions`, the plug-in flags
those of `TensorARConfig`; `--help` lists them with their defaults. The loop: tensorar/training/trainer.py.

Recipe (the paper's defaults): AdamW betas (0.9, 0.95), weight decay 0.05 on >= 2-D weights only, lr 1e-4
for plug-in modules and 1e-5 for base weights (`--lr-base` applies to base weights in every mode, so a
from-scratch config sets it higher), constant lr after an optional linear warm-up, 10 % class-label
dropout (the backbone's condition_dropout_prob, for CFG), grad-norm clip 1.0, bf16 autocast on CUDA (fp32 on
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
written atomically and holds the model (`tensorar.models.loading.load_model` rebuilds it: GPT or TensorAR),
its configs, EMA weights, optimizer, step, data position and settings.

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

from tensorar.distributed import cleanup_distributed, init_distributed
from tensorar.errors import run_stage
from tensorar.models.registry import FAMILIES
from tensorar.models.tensorar import TensorARConfig
from tensorar.options import add_arguments, from_arguments
from tensorar.training.options import MODES, TrainOptions
from tensorar.training.build import RunSetup
from tensorar.training.trainer import train


def parse_args(argv: list[str] | None = None) -> tuple[RunSetup, TrainOptions, str]:
    parser = argparse.ArgumentParser(prog="tensorar train", description=__doc__.split("\n")[0])
    parser.add_argument("--codes", required=True, help="codes directory written by tensorar extract_codes")
    parser.add_argument("--conditions", default=None,
                        help="text-image codes: the conditions folder written by tensorar encode_captions")
    parser.add_argument("--run-dir", required=True, help="outputs and checkpoints; rerun to resume")
    parser.add_argument("--mode", required=True, choices=MODES)
    parser.add_argument("--family", default="llamagen", choices=sorted(FAMILIES), help="backbone family")
    parser.add_argument("--model", help="preset (required for --mode base), e.g. GPT-toy-S, GPT-B")
    parser.add_argument("--init", help="base checkpoint for finetune / tensorar: ours or an official file")
    parser.add_argument("--init-preset", help="preset of an official --init file (default: --model)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    add_arguments(parser.add_argument_group("TensorAR plug-in (--mode tensorar)"), TensorARConfig)
    add_arguments(parser.add_argument_group("optimisation (TrainOptions)"), TrainOptions)
    args = parser.parse_args(argv)
    if args.mode == "base" and not args.model:
        parser.error("--mode base needs --model PRESET")
    if args.mode != "base" and not args.init:
        parser.error(f"--mode {args.mode} needs --init BASE_CHECKPOINT")
    plugin = from_arguments(parser, args, TensorARConfig) if args.mode == "tensorar" else None
    setup = RunSetup(codes=args.codes, run_dir=args.run_dir, mode=args.mode, family=args.family, model=args.model,
                     init=args.init, init_preset=args.init_preset, plugin=plugin, conditions=args.conditions)
    return setup, from_arguments(parser, args, TrainOptions), args.device


def main(argv: list[str] | None = None) -> None:
    setup, opts, device = parse_args(argv)
    info = init_distributed(device, group=opts.strategy == "fsdp")
    status = train(setup, opts, info)
    cleanup_distributed()
    if status:
        raise SystemExit(status)


if __name__ == "__main__":
    run_stage(main)
