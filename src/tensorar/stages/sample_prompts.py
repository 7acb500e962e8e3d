"""Generate images for a prompt file with a text-conditioned backbone (or TensorAR around one), in the
folder layout a benchmark reads.

    tensorar sample_prompts --ckpt RUN/final.pt --vq TOK.pt --encoder t5 --encoder-path flan-t5-xl/ \
        --prompts geneval/prompts/evaluation_metadata.jsonl --layout geneval --out SAMPLES/ [--images-per-prompt 4]
    tensorar sample_prompts ... --prompts dpg_bench/prompts/ --layout dpg --out GRIDS/

Layouts, resume and the per-sample seeds: tensorar.sampling.prompts. Prompts are encoded with the text
encoder the model was trained with (`--encoder`, tensorar.models.conditioning). `OUT/identity.json`
(checkpoint, tokenizer and encoder identity, prompts, settings) decides whether existing outputs may be
kept, as for `tensorar sample`. Once every prompt has its images, the folder is checked against the
prompt set and `OUT/prompts.json` records the set (tensorar.evaluation.prompt_sets; score_benchmark
checks the folder against it before scoring).
"""
from __future__ import annotations

import argparse
import contextlib
from dataclasses import asdict
from pathlib import Path

from tensorar.data.conditions import check_trained_with
from tensorar.decoding.sampling import SamplingOptions
from tensorar.distributed import barrier, cleanup_distributed, get_logger, init_distributed
from tensorar.errors import InputError, run_stage
from tensorar.evaluation import prompt_sets
from tensorar.evaluation.prompt_sets import SET_MANIFEST, read_prompts
from tensorar.fileio import atomic_write_json, claim_for, content_id, exclusive_lock, identity_hash, remove_stale_temp_files
from tensorar.options import add_arguments, from_arguments
from tensorar.sampling.options import ModelSource, RunOptions, TextEncoderSpec
from tensorar.sampling.prompts import PromptSamples, is_done, sample_prompts
from tensorar.sampling.sampler import Sampler
from tensorar.sampling.shards import file_sha256


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tensorar sample_prompts", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p.add_argument_group("model and tokenizer (ModelSource)"), ModelSource, required=("vq",))
    add_arguments(p.add_argument_group("text encoder (TextEncoderSpec)"), TextEncoderSpec)
    prompts = p.add_argument_group("prompts and output (PromptSamples)")
    add_arguments(prompts, PromptSamples)
    prompts.add_argument("--out", required=True, help="output folder in the benchmark's layout")
    prompts.add_argument("--stats-json", default=None)
    add_arguments(p.add_argument_group("run (RunOptions)"), RunOptions)
    add_arguments(p.add_argument_group("token sampling (SamplingOptions)"), SamplingOptions)
    return p


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    source, run = from_arguments(parser, args, ModelSource), from_arguments(parser, args, RunOptions)
    spec, options = from_arguments(parser, args, PromptSamples), from_arguments(parser, args, SamplingOptions)
    encoder_spec = from_arguments(parser, args, TextEncoderSpec)
    info = init_distributed(run.device)
    log = get_logger("sample_prompts", info.is_main)
    amp_dtype = run.amp_dtype(info.device)
    run.apply_tf32(info.device)
    prompts = read_prompts(spec.prompts, spec.layout)
    model = source.load_model(info.device)
    if model.backbone.num_classes is not None:
        raise InputError(f"{source.ckpt} is class-conditional: sample it with tensorar sample")
    tokenizer = source.load_tokenizer(info.device)
    encoder = encoder_spec.build(info.device, getattr(model.backbone.config, "prompt_length", None))
    check_trained_with(getattr(model, "trained_on", None), source.ckpt, content_id(source.vq), source.vq,
                       encoder.identity())
    sampler = Sampler(model, tokenizer.decode, options, info.device, amp_dtype, run.batch_size)
    out = Path(args.out)
    identity = {"model": file_sha256(source.ckpt, info), "tokenizer": file_sha256(source.vq, info),
                "encoder": encoder.identity(), "prompts": identity_hash(prompts), "layout": spec.layout,
                "n": spec.images_per_prompt, "seed": spec.seed, "image_size": spec.image_size,
                "options": asdict(options), "dtype": run.dtype, "tf32": run.tf32}
    with contextlib.ExitStack() as held:
        if info.is_main:
            held.enter_context(exclusive_lock(out, "sample_prompts job"))
            remove_stale_temp_files(out)
            outputs = [SET_MANIFEST, "[0-9]" * 5, "*.png"] if spec.layout == "geneval" else [SET_MANIFEST, "*.png"]
            claim_for(out, identity, outputs, log, "sample_prompts job")
        barrier()
        stats = sample_prompts(sampler, encoder, prompts, out, spec, info)
        barrier()
    missing = [key for p, (key, _, _) in enumerate(prompts) if not is_done(out, spec.layout, p, key)]
    if info.is_main:
        if missing:
            raise SystemExit(f"{len(missing)} prompts have no images yet (a rank did not finish): rerun to resume")
        expected = {"layout": spec.layout, "prompts": prompts, "prompts_sha256": identity_hash(prompts),
                    "images_per_prompt": spec.images_per_prompt, "image_size": spec.image_size}
        covered = prompt_sets.check_folder(out, expected)  # exactly the set's images, one size
        prompt_sets.write_set_manifest(out, spec.layout, prompts, spec.images_per_prompt, covered["image_size"])
        if args.stats_json:
            atomic_write_json(args.stats_json, {
                **stats, "images_per_prompt": spec.images_per_prompt, "layout": spec.layout, "seed": spec.seed,
                "options": asdict(options), "encoder": encoder_spec.encoder,
                "model": {"family": model.backbone.family, "parameters": sum(p.numel() for p in model.parameters()),
                          "base_parameters": sum(p.numel() for p in model.backbone.parameters()),
                          "k": model.k, "num_tokens": model.backbone.num_tokens},
                "world_size": info.world_size, "images_per_s": stats["images_generated"] / stats["wall_seconds"]
                if stats["wall_seconds"] > 0 and stats["images_generated"] else None,
            })
        log.info(f"{len(prompts)} prompts x {spec.images_per_prompt} images in {out} "
                 f"({stats['prompts_generated']} generated now)")
    cleanup_distributed()


if __name__ == "__main__":
    run_stage(main)
