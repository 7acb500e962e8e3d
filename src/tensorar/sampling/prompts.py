"""Sampling a prompt file in the folder layout a benchmark reads, resumably.

Layouts: `geneval` (prompts: GenEval's metadata JSONL; output `<index:05d>/metadata.jsonl` +
`samples/NNNN.png`, tensorar.evaluation.geneval) and `dpg` (prompts: DPG-Bench's `<item_id>.txt` folder;
output one 2x2 grid `<item_id>.png` of 4 samples, tensorar.evaluation.dpg). Sample j of prompt p is
sample i = p * n + j: its draws depend on (seed, i) only, so the images do not depend on the batch size
or the number of processes (rank r takes prompts p % world == r). A prompt's folder (or grid) is
written atomically once all its images exist, so a killed job resumes at the next missing prompt."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from tensorar.decoding.cpu_packing import packed_for_decoding
from tensorar.distributed import DistInfo
from tensorar.evaluation import dpg, geneval
from tensorar.evaluation.prompt_sets import LAYOUTS
from tensorar.models.backbone import condition_to
from tensorar.options import check_fields, option
from tensorar.sampling.sampler import Sampler


@dataclass(frozen=True, kw_only=True)
class PromptSamples:
    """Which images of which prompt file, in which layout (tensorar sample_prompts)."""

    prompts: str = option(help="GenEval metadata JSONL, or DPG-Bench's prompts folder")
    layout: str = option(help="the benchmark's folder layout", choices=LAYOUTS)
    images_per_prompt: int = option(4, "4 for GenEval and DPG-Bench", min=1)
    seed: int = option(0, "seed of every image's draws")
    image_size: int | None = option(None, "resize (bicubic) to this side", min=1)

    def __post_init__(self):
        check_fields(self)
        if self.layout == "dpg" and self.images_per_prompt != 4:
            raise ValueError("--layout dpg writes 2x2 grids: --images-per-prompt must be 4")


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
def sample_prompts(sampler: Sampler, encoder, prompts, out: Path, spec: PromptSamples, info: DistInfo,
                   progress: bool = True) -> dict:
    """This rank's missing prompts -> images in `spec.layout`; returns counts."""
    n = spec.images_per_prompt
    mine = [p for p in range(len(prompts)) if p % info.world_size == info.rank]
    todo = [p for p in mine if not is_done(out, spec.layout, p, prompts[p][0])]
    # (prompt, image) pairs in batches of at most `batch_size` images: a prompt's images may span batches
    # (draws depend on (seed, p * n + j) only, so the images do not change); a prompt is written once all
    # its images exist.
    pairs = [(p, j) for p in todo for j in range(n)]
    pending: dict[int, list[np.ndarray]] = {}
    start = time.perf_counter()
    with packed_for_decoding(sampler.model), tqdm(total=len(pairs), unit="img", desc="sample_prompts",
                                                  disable=not (progress and info.is_main)) as bar:
        for b in range(0, len(pairs), sampler.batch_size):
            chunk = pairs[b:b + sampler.batch_size]
            captions = [prompts[p][1] for p, _ in chunk]
            indices = np.array([p * n + j for p, j in chunk])
            cond = condition_to(encoder.encode(captions), info.device)
            images = sampler.pixels(sampler.tokens(cond, indices, spec.seed), spec.image_size)  # (B, S, S, 3)
            for (p, _), image in zip(chunk, images):
                pending.setdefault(p, []).append(image)
                if len(pending[p]) == n:
                    key, _, meta = prompts[p]
                    write_prompt(out, spec.layout, p, key, meta, np.stack(pending.pop(p)))
            bar.update(len(captions))
    return {"prompts": len(prompts), "prompts_generated": len(todo), "images_generated": len(todo) * n,
            "wall_seconds": time.perf_counter() - start}
