"""Captions of a text-image codes folder -> the conditions a text-conditioned backbone trains on, once.

    tensorar encode_captions --codes CODES/ --encoder t5 --encoder-path flan-t5-xl/ --out CODES/conditions-t5
    tensorar encode_captions --codes CODES/ --encoder toy --out CODES/conditions-toy

`--encoder` (tensorar.models.conditioning): "t5" (LlamaGen's flan-t5-xl features, float32, 120 tokens),
"janus" (Janus-Pro's tokenised chat prompt) or "toy" (ours). Reads `CODES/captions.jsonl` (written by
extract_codes for a captioned dataset), writes shards of `--shard-size` items (tensorar.data.conditions:
caption features as valid tokens only) and `conditions.json`. Resumable like extract_codes: shard files
are written atomically, each shard's marker file last, and a shard is skipped when its marker is present;
`conditions.json` says "incomplete" while any shard is written. `identity.json` (the encoder's identity,
the codes' identity and the captions' hash) decides whether existing shards belong to this job;
otherwise the files it records are deleted first (fileio.claim_for: another stage's folder, or files
this job did not make, are refused, never deleted).
"""
from __future__ import annotations

import argparse
import contextlib
import math
from pathlib import Path

import torch
from tqdm import tqdm

from tensorar.data.codes import CAPTIONS, read_manifest
from tensorar.data.conditions import (
    MANIFEST,
    SHARD_KEYS,
    EncodeOptions,
    codes_identity,
    finish,
    kind_of,
    mark_incomplete,
    shard_done,
    write_shard,
)
from tensorar.distributed import get_logger
from tensorar.errors import InputError, run_stage
from tensorar.fileio import (
    claim_for,
    exclusive_lock,
    identity_hash,
    read_jsonl,
    remove_stale_temp_files,
)
from tensorar.options import add_arguments, from_arguments
from tensorar.sampling.options import TextEncoderSpec


def read_captions(codes: Path) -> tuple[list[str], dict]:
    """The codes' captions (item i on line i) and their manifest."""
    manifest = read_manifest(codes)
    if manifest.get("condition") != "caption" or not (codes / CAPTIONS).is_file():
        raise InputError(f"{codes} holds codes of a class-conditional dataset (no {CAPTIONS}): extract codes of "
                         "a captioned dataset (captions.jsonl or tar shards) first")
    lines = read_jsonl(codes / CAPTIONS)
    for n, caption in lines:
        if not isinstance(caption, str):
            raise InputError(f"{codes / CAPTIONS}:{n}: a caption must be a JSON string, got {caption!r}")
    if len(lines) != manifest["count"]:
        raise InputError(f"{codes / CAPTIONS} holds {len(lines)} captions but {codes} {manifest['count']} items: "
                         "rerun extract_codes")
    return [caption for _, caption in lines], manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tensorar encode_captions", description=__doc__.split("\n")[0])
    parser.add_argument("--codes", required=True, help="codes folder of a captioned dataset (tensorar extract_codes)")
    add_arguments(parser.add_argument_group("text encoder (TextEncoderSpec)"), TextEncoderSpec)
    parser.add_argument("--out", required=True, help="conditions folder")
    add_arguments(parser.add_argument_group("run (EncodeOptions)"), EncodeOptions)
    args = parser.parse_args(argv)
    spec = from_arguments(parser, args, TextEncoderSpec)
    opts = from_arguments(parser, args, EncodeOptions)

    log = get_logger("encode_captions")
    codes, out = Path(args.codes), Path(args.out)
    captions, manifest = read_captions(codes)
    encoder = spec.build(opts.device)
    num_shards = math.ceil(len(captions) / opts.shard_size)
    identity = {"encoder": encoder.identity(), "codes": codes_identity(manifest), "captions": identity_hash(captions),
                "shard_size": opts.shard_size}
    sample = encoder.encode(captions[:1])  # the kind and shapes, for the manifest
    kind = kind_of(sample)
    with contextlib.ExitStack() as held:
        held.enter_context(exclusive_lock(out, "encode_captions job"))
        remove_stale_temp_files(out)
        outputs = [MANIFEST, *(f"{key}_[0-9][0-9][0-9][0-9][0-9].npy" for keys in SHARD_KEYS.values() for key in keys)]
        claim_for(out, identity, outputs, log, "encode_captions job")
        todo = [i for i in range(num_shards) if not shard_done(out, kind, i)]
        if todo:
            mark_incomplete(out)
        shards = []
        for i in tqdm(range(num_shards), desc="encode_captions", unit="shard"):
            chunk = captions[i * opts.shard_size:(i + 1) * opts.shard_size]
            if i not in todo:
                shards.append({"count": len(chunk)})
                continue
            parts = [encoder.encode(chunk[b:b + opts.batch_size]) for b in range(0, len(chunk), opts.batch_size)]
            cond = {key: torch.cat([p[key] for p in parts]) for key in parts[0]}
            shards.append(write_shard(out, i, cond))
        finish(out, shards, sample, {**encoder.identity(), "identity": identity_hash(identity)}, manifest,
               complete=True)
    log.info(f"encoded {len(captions)} captions with {spec.encoder} -> {out}")


if __name__ == "__main__":
    run_stage(main)
