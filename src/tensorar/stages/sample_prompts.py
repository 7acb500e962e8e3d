"""Generate images for a prompt file with a text-conditioned backbone (or TensorAR around one), in the
folder layout a benchmark reads.

    tensorar sample_prompts --ckpt RUN/final.pt --vq TOK.pt --encoder t5 --encoder-path flan-t5-xl/ \
        --prompts geneval/prompts/evaluation_metadata.jsonl --layout geneval --out SAMPLES/ [--images-per-prompt 4]
    tensorar sample_prompts ... --prompts dpg_bench/prompts/ --layout dpg --out GRIDS/

Layouts: `geneval` (prompts: GenEval's metadata JSONL; output `<index:05d>/metadata.jsonl` +
`samples/NNNN.png`, tensorar.evaluation.geneval) and `dpg` (prompts: DPG-Bench's `<item_id>.txt` folder;
output one 2x2 grid `<item_id>.png` of 4 samples, tensorar.evaluation.dpg). Prompts are encoded with the
text encoder the model was trained with (`--encoder`, tensorar.models.conditioning).

Sample j of prompt p is sample i = p * n + j: its draws depend on (seed, i) only, so the images do not
depend on the batch size or the number of processes (under torchrun rank r takes prompts p % world ==
r). A prompt's folder (or grid) is written atomically once all its images exist, so a killed job resumes
at the next missing prompt; `OUT/identity.json` (checkpoint, tokenizer and encoder identity, prompts,
settings) decides whether existing outputs may be kept, as for `tensorar sample`. Once every prompt has
its images, the folder is checked against the prompt set and `OUT/prompts.json` records the set
(tensorar.evaluation.prompt_sets; score_benchmark checks the folder against it before scoring).
"""
from __future__ import annotations

import argparse
import contextlib
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from tensorar.data.conditions import check_trained_with
from tensorar.decoding.cpu_packing import packed_for_decoding
from tensorar.decoding.images import (
    autocast,
    decode_tokens,
    generate_tokens,
    to_uint8_nhwc,
)
from tensorar.decoding.sampling import SamplingOptions
from tensorar.distributed import (
    DistInfo,
    barrier,
    cleanup_distributed,
    get_logger,
    init_distributed,
)
from tensorar.errors import InputError, run_stage
from tensorar.evaluation import dpg, geneval, prompt_sets
from tensorar.evaluation.prompt_sets import LAYOUTS, SET_MANIFEST, read_prompts
from tensorar.fileio import (
    atomic_write_json,
    claim_for,
    content_id,
    exclusive_lock,
    identity_hash,
    remove_stale_temp_files,
)
from tensorar.models.backbone import condition_to
from tensorar.models.conditioning import TEXT_ENCODERS, text_encoder
from tensorar.models.loading import load_model, load_tokenizer
from tensorar.models.registry import FAMILIES, family
from tensorar.options import add_arguments, from_arguments, positive_int
from tensorar.stages.sample import file_sha256

def is_done(out: Path, layout: str, index: int, key: str) -> bool:
    if layout == "geneval":
        return (out / f"{index:05d}" / "metadata.jsonl").is_file()  # written last
    return (out / f"{key}.png").is_file()


def write_prompt(out: Path, layout: str, index: int, key: str, meta: dict, images: np.ndarray) -> None:
    if layout == "geneval":
        geneval.write_prompt_images(out, index, meta, list(images))
    else:
        dpg.write_grid(out, key, list(images))


@torch.no_grad()
def sample_prompts(model, decode, encoder, prompts, out: Path, layout: str, n: int, seed: int,
                   options: SamplingOptions, info: DistInfo, batch_size: int, image_size: int | None,
                   amp_dtype=None, progress: bool = True) -> dict:
    """This rank's missing prompts -> images in `layout`; returns counts."""
    offset = family(model.backbone.family).pixel_offset
    mine = [p for p in range(len(prompts)) if p % info.world_size == info.rank]
    todo = [p for p in mine if not is_done(out, layout, p, prompts[p][0])]
    # (prompt, image) pairs in batches of at most `batch_size` images: a prompt's images may span batches
    # (draws depend on (seed, p * n + j) only, so the images do not change); a prompt is written once all
    # its images exist.
    pairs = [(p, j) for p in todo for j in range(n)]
    pending: dict[int, list[np.ndarray]] = {}
    start = time.perf_counter()
    with packed_for_decoding(model), tqdm(total=len(pairs), unit="img", desc="sample_prompts",
                                          disable=not (progress and info.is_main)) as bar:
        for b in range(0, len(pairs), batch_size):
            chunk = pairs[b:b + batch_size]
            captions = [prompts[p][1] for p, _ in chunk]
            indices = np.array([p * n + j for p, j in chunk])
            cond = condition_to(encoder.encode(captions), info.device)
            with autocast(info.device, amp_dtype):
                tokens = generate_tokens(model, cond, indices, seed, options, info.device)
            images = to_uint8_nhwc(decode_tokens(decode, tokens), image_size, offset)  # (B, S, S, 3)
            for (p, _), image in zip(chunk, images):
                pending.setdefault(p, []).append(image)
                if len(pending[p]) == n:
                    key, _, meta = prompts[p]
                    write_prompt(out, layout, p, key, meta, np.stack(pending.pop(p)))
            bar.update(len(captions))
    return {"prompts": len(prompts), "prompts_generated": len(todo), "images_generated": len(todo) * n,
            "wall_seconds": time.perf_counter() - start}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tensorar sample_prompts", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    model = p.add_argument_group("model, tokenizer and text encoder")
    model.add_argument("--ckpt", required=True, help="backbone or TensorAR checkpoint (ours), or an official file/folder")
    model.add_argument("--family", default=None, choices=sorted(FAMILIES), help="family of an official --ckpt")
    model.add_argument("--gpt-preset", default=None, help="preset of an official --ckpt, e.g. GPT-XL, Janus-Pro-7B")
    model.add_argument("--block-size", type=positive_int, default=None, help="token count of an official LlamaGen file")
    model.add_argument("--vq", required=True, help="image tokenizer checkpoint (a Janus-Pro folder for Janus-VQ16)")
    model.add_argument("--vq-preset", default=None, help="preset of a released tokenizer (VQ-16, Janus-VQ16)")
    model.add_argument("--encoder", required=True, choices=TEXT_ENCODERS, help="text encoder the model was trained with")
    model.add_argument("--encoder-path", default=None, help="its model folder (t5: flan-t5-xl; janus: the model folder)")
    model.add_argument("--dim", type=positive_int, default=32, help="toy encoder: feature width")
    model.add_argument("--max-tokens", type=positive_int, default=16, help="toy encoder: caption positions")
    model.add_argument("--prompt-length", type=positive_int, default=None,
                       help="janus encoder: prompt positions (default: the model's prompt_length)")
    run = p.add_argument_group("prompts and output")
    run.add_argument("--prompts", required=True, help="GenEval metadata JSONL, or DPG-Bench's prompts folder")
    run.add_argument("--layout", required=True, choices=LAYOUTS)
    run.add_argument("--out", required=True, help="output folder in the benchmark's layout")
    run.add_argument("--images-per-prompt", type=positive_int, default=4, help="4 for GenEval and DPG-Bench")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--image-size", type=positive_int, default=None, help="resize (bicubic) to this side")
    run.add_argument("--batch-size", type=positive_int, default=32,
                     help="images per batch (a prompt's images may span batches; the images do not change)")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    run.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="autocast of the AR model (bf16: CUDA)")
    run.add_argument("--stats-json", default=None)
    add_arguments(p.add_argument_group("token sampling (SamplingOptions)"), SamplingOptions)
    return p


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    options = from_arguments(parser, args, SamplingOptions)
    if args.layout == "dpg" and args.images_per_prompt != 4:
        parser.error("--layout dpg writes 2x2 grids: --images-per-prompt must be 4")
    info = init_distributed(args.device)
    log = get_logger("sample_prompts", info.is_main)
    if args.dtype == "bf16" and info.device.type != "cuda":
        raise SystemExit("--dtype bf16 needs CUDA")
    prompts = read_prompts(args.prompts, args.layout)
    model = load_model(args.ckpt, args.family, args.gpt_preset, block_size=args.block_size).to(info.device).eval()
    if model.backbone.num_classes is not None:
        raise InputError(f"{args.ckpt} is class-conditional: sample it with tensorar sample")
    tokenizer = load_tokenizer(args.vq, args.vq_preset, device=info.device)
    prompt_length = args.prompt_length or getattr(model.backbone.config, "prompt_length", 256)
    encoder = text_encoder(args.encoder, args.encoder_path, dim=args.dim, max_tokens=args.max_tokens,
                           prompt_length=prompt_length, device=info.device)
    check_trained_with(getattr(model, "trained_on", None), args.ckpt, content_id(args.vq), args.vq, encoder.identity())
    out = Path(args.out)
    identity = {"model": file_sha256(args.ckpt, info), "tokenizer": file_sha256(args.vq, info),
                "encoder": encoder.identity(), "prompts": identity_hash(prompts), "layout": args.layout,
                "n": args.images_per_prompt, "seed": args.seed, "image_size": args.image_size,
                "options": asdict(options), "dtype": args.dtype}
    with contextlib.ExitStack() as held:
        if info.is_main:
            held.enter_context(exclusive_lock(out, "sample_prompts job"))
            remove_stale_temp_files(out)
            outputs = [SET_MANIFEST, "[0-9]" * 5, "*.png"] if args.layout == "geneval" else [SET_MANIFEST, "*.png"]
            claim_for(out, identity, outputs, log, "sample_prompts job")
        barrier()
        stats = sample_prompts(model, tokenizer.decode, encoder, prompts, out, args.layout, args.images_per_prompt,
                               args.seed, options, info, args.batch_size, args.image_size,
                               torch.bfloat16 if args.dtype == "bf16" else None)
        barrier()
    missing = [key for p, (key, _, _) in enumerate(prompts) if not is_done(out, args.layout, p, key)]
    if info.is_main:
        if missing:
            raise SystemExit(f"{len(missing)} prompts have no images yet (a rank did not finish): rerun to resume")
        expected = {"layout": args.layout, "prompts": prompts, "prompts_sha256": identity_hash(prompts),
                    "images_per_prompt": args.images_per_prompt, "image_size": args.image_size}
        covered = prompt_sets.check_folder(out, expected)  # exactly the set's images, one size
        prompt_sets.write_set_manifest(out, args.layout, prompts, args.images_per_prompt, covered["image_size"])
        if args.stats_json:
            atomic_write_json(args.stats_json, {
                **stats, "images_per_prompt": args.images_per_prompt, "layout": args.layout, "seed": args.seed,
                "options": asdict(options), "encoder": args.encoder,
                "model": {"family": model.backbone.family, "parameters": sum(p.numel() for p in model.parameters()),
                          "base_parameters": sum(p.numel() for p in model.backbone.parameters()),
                          "k": model.k, "num_tokens": model.backbone.num_tokens},
                "world_size": info.world_size, "images_per_s": stats["images_generated"] / stats["wall_seconds"]
                if stats["wall_seconds"] > 0 and stats["images_generated"] else None,
            })
        log.info(f"{len(prompts)} prompts x {args.images_per_prompt} images in {out} "
                 f"({stats['prompts_generated']} generated now)")
    cleanup_distributed()


if __name__ == "__main__":
    run_stage(main)
