"""How long each run trains: a `training` mapping of the config (`finetuning`, `backbones.<b>.base_training`)
with its length in steps, or in epochs of the data the backbone trains on, becomes `TrainOptions` with
steps. The paper gives its fine-tuning lengths in epochs (Appendix A.2: 20 epochs of ImageNet for
class-to-image, 1 epoch of the BLIP-3o pretrain set for text-to-image)."""
from __future__ import annotations

import math
from dataclasses import replace

from tensorar.options import from_mapping
from tensorar.training.options import TrainOptions

ITEMS_KEY = {"images": "dataset.train_items", "captions": "captions.train_items"}


def training_options(values: dict, where: str, data: str, counts: dict) -> TrainOptions:
    """TrainOptions of a `training` mapping; a length in epochs (by data) becomes steps over the data's
    training items: ceil(epochs * items / global_batch_size). The trainer visits items without
    replacement, one random augmentation view per visit (training/batches.py), so an epoch is one pass
    over the items, not over the views."""
    values = dict(values)
    epochs = values.pop("epochs", None)
    if epochs is None:
        return from_mapping(TrainOptions, values, where)
    if "steps" in values:
        raise ValueError(f"{where}: set steps or epochs, not both")
    if data not in epochs:
        raise ValueError(f"{where}.epochs.{data}: needed for a backbone trained on {data}")
    if not counts[data]:
        raise ValueError(f"{ITEMS_KEY[data]}: the number of training items is needed for {where}.epochs")
    options = from_mapping(TrainOptions, {**values, "steps": 1}, where)  # checked; replaced below
    return replace(options, steps=math.ceil(epochs[data] * counts[data] / options.global_batch_size))
