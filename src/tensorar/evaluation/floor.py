"""The shuffled-caption floor of a GenEval score (ours, for claims.md's text-to-image gate).

A benchmark score says something about prompt following only when the model follows its prompts better
than a model that ignores them. The floor is what a model's own images score when each prompt's images
are judged against another prompt's metadata: the same detections and the same scoring rules, only the
caption no longer belongs to the image. `shuffled_caption_overall` pairs the prompts by a seeded
derangement (a random cyclic order, each prompt judged against the next one's metadata, so no prompt
keeps its own) and returns GenEval's overall score of the result.

GenEval classifies colours only for the classes a prompt asks a colour of (the official evaluator; the
toy detector classifies every detection). A shuffled prompt that asks the colour of a class whose colour
was never classified is scored as not correct, which can only lower the floor a little; the toy's raw
files have every colour, so its floor has no such cases.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tensorar.evaluation import geneval

MISSING_COLOUR = "colour of"  # geneval.evaluate_image's message when a colour was never classified


def shuffled_caption_overall(raw_path: str | Path, seed: int = 0) -> float:
    """GenEval overall of a raw detections file with every prompt's images judged against another prompt."""
    images = list(geneval.read_raw_detections(raw_path))
    keys = list(dict.fromkeys(json.dumps(im.metadata, sort_keys=True) for im in images))  # one per prompt
    if len(keys) < 2:
        raise ValueError(f"{raw_path}: a shuffled-caption floor needs at least 2 prompts, found {len(keys)}")
    cycle = np.random.default_rng(seed).permutation(len(keys))  # (P,) a random cyclic order of the prompts
    judged_by = {keys[a]: json.loads(keys[b]) for a, b in zip(cycle, np.roll(cycle, -1))}
    records = []
    for im in images:
        metadata = judged_by[json.dumps(im.metadata, sort_keys=True)]
        try:
            records.append(geneval.evaluate_image(metadata, im.detections, filename=im.filename))
        except ValueError as e:
            if MISSING_COLOUR not in str(e):
                raise
            records.append({"tag": metadata["tag"], "correct": False})
    return geneval.summarize(records)["overall"]
