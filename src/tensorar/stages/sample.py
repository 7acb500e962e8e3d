"""Generate N class-conditional images from a backbone or TensorAR checkpoint into an ADM-format .npz.

    tensorar sample --ckpt RUN/final.pt --vq VQ.pt --out SAMPLES.npz --num-samples 50000 \
        [--cfg-scale 1.0] [--cfg-interval -1] [--temperature 1.0] [--top-k 0] [--top-p 1.0] \
        [--labels balanced|random] [--seed 0] [--batch-size 32] [--image-size 256] \
        [--draft-noise none|schedule] [--stats-json J] [--grid-png P] [--drafts-png P]
    torchrun --nproc_per_node 8 -m tensorar sample ...      # data-parallel, same output

The flags are the fields of `ModelSource` and `RunOptions` (tensorar.sampling.options), `SamplingConfig`
and `SamplingOptions` (per sub-token values as `--cfg-scale 1.9,2.0` for Open-MAGVIT2) and
`SampleOutputs` below; `--help` lists them with their defaults. The defaults of the sampling flags are
those of LlamaGen's script; per-model values used for the paper's tables live in the workflow config.

The output holds `arr_0` uint8 (N, S, S, 3) and `labels` int64 (N,), the layout ADM's evaluator reads;
post-processing as the family's official evaluation script (tensorar.sampling.sampler). Sample i
depends only on (seed, i) and labels on (seed, N, number of classes), so the output is the same for any
batch size and world size. Sharding, resume and assembly: tensorar.sampling.shards.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tensorar.decoding.sampling import SamplingConfig, SamplingOptions
from tensorar.distributed import cleanup_distributed, get_logger, init_distributed
from tensorar.errors import run_stage
from tensorar.fileio import atomic_write_json
from tensorar.options import add_arguments, check_fields, from_arguments, option
from tensorar.reporting.image_grids import DRAFT_ROWS
from tensorar.sampling.labels import class_labels
from tensorar.sampling.options import ModelSource, RunOptions
from tensorar.sampling.sampler import Sampler, is_tensorar, load_class_conditional, model_summary
from tensorar.sampling.shards import file_sha256, run_sampling


@dataclass(frozen=True, kw_only=True)
class SampleOutputs:
    out: str = option(help="SAMPLES.npz (ADM format)")
    stats_json: str | None = option(None, "counts, timings and settings (JSON)")
    grid_png: str | None = option(None, "the first samples ordered by label (PNG)")
    drafts_png: str | None = option(None, "TensorAR refinement strip (paper Fig. 8/10)")
    keep_shards: bool = option(False, "keep OUT.shards/ after assembly")

    def __post_init__(self):
        check_fields(self)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tensorar sample", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p.add_argument_group("model and tokenizer (ModelSource)"), ModelSource, required=("vq",))
    add_arguments(p.add_argument_group("samples (SamplingConfig)"), SamplingConfig)
    add_arguments(p.add_argument_group("token sampling (SamplingOptions)"), SamplingOptions)
    add_arguments(p.add_argument_group("run (RunOptions)"), RunOptions)
    add_arguments(p.add_argument_group("outputs"), SampleOutputs)
    return p


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    source, run = from_arguments(parser, args, ModelSource), from_arguments(parser, args, RunOptions)
    cfg, options = from_arguments(parser, args, SamplingConfig), from_arguments(parser, args, SamplingOptions)
    outputs = from_arguments(parser, args, SampleOutputs)
    info = init_distributed(run.device)
    logger = get_logger("sample", info.is_main)
    amp_dtype = run.amp_dtype(info.device)
    run.apply_tf32(info.device)

    model, tokenizer = load_class_conditional(source, info.device, options, drafts=bool(outputs.drafts_png))
    sampler = Sampler(model, tokenizer.decode, options, info.device, amp_dtype, run.batch_size)
    backbone = model.backbone
    # What the samples are made of: file contents, not paths (a retrained checkpoint at the same path
    # must not resume the old model's shards).
    identity = {"model": {"sha256": file_sha256(source.ckpt, info), "family": source.family,
                          "preset": source.preset, "block_size": source.block_size, "ema": source.ema},
                "tokenizer": {"sha256": file_sha256(source.vq, info), "preset": source.vq_preset}, "dtype": run.dtype,
                "tf32": run.tf32}
    logger.info(f"{'TensorAR' if is_tensorar(model) else backbone.family} {source.ckpt}: {cfg.num_samples} samples, "
                f"{backbone.num_tokens} tokens each, world size {info.world_size}, {info.device}")

    stats = run_sampling(sampler, outputs.out, cfg, info, identity=identity, keep_shards=outputs.keep_shards,
                         grid_png=outputs.grid_png)
    if info.is_main:
        if outputs.drafts_png:
            labels = class_labels(cfg.labels, cfg.num_samples, backbone.num_classes, cfg.seed,
                                  np.arange(min(DRAFT_ROWS, cfg.num_samples)))  # the rows shown only
            stats["drafts_steps"] = sampler.write_refinement_strip(outputs.drafts_png, labels, cfg)
        if outputs.stats_json:
            atomic_write_json(outputs.stats_json, {
                "config": asdict(cfg),
                "options": asdict(options),
                "run": {"ckpt": str(Path(source.ckpt).resolve()), "vq": str(Path(source.vq).resolve()),
                        "ema": source.ema, "dtype": run.dtype, "tf32": run.tf32, "batch_size": run.batch_size,
                        "device": str(info.device), "family": backbone.family, "preset": source.preset,
                        "vq_preset": source.vq_preset},
                "model": model_summary(model),
                "seeds": {
                    "seed": cfg.seed,
                    "labels": f"numpy default_rng({cfg.seed}) ({cfg.labels})",
                    "sample_i": f"torch.Generator seeded from numpy SeedSequence({cfg.seed}, spawn_key=(i,))",
                },
                **stats,
            })
        logger.info(f"wrote {outputs.out}: {stats['output_shape']}, {stats['images_generated']} generated, "
                    f"{stats['shards_reused']} of {stats['num_shards']} shards reused")
    cleanup_distributed()


if __name__ == "__main__":
    run_stage(main)
