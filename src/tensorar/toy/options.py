"""The typed options of the toy's data stages (make_digits, make_captions): their flags are derived from
these fields and the workflow writes its argument lists from them (plan/jobs.py); the config schema's
`dataset` and `captions` defaults are tested equal to them."""
from __future__ import annotations

from dataclasses import dataclass

from tensorar.options import check_fields, option


@dataclass(frozen=True, kw_only=True)
class DigitsOptions:
    """The digits ImageFolder (tensorar.toy.digits.build checks the values)."""

    image_size: int = option(16, "output side, a multiple of 8")
    val_fraction: float = option(0.2, "held-out fraction of each class")
    seed: int = option(0, "seed of the stratified split")

    def __post_init__(self):
        check_fields(self)


@dataclass(frozen=True, kw_only=True)
class CaptionsOptions:
    """The captioned canvases (tensorar.toy.captioned_digits); the held-out split is drawn from seed + 1."""

    num_train: int = option(6000, "training canvases (train glyphs)", min=1)
    num_val: int = option(600, "held-out canvases (val glyphs)", min=1)
    seed: int = option(0, "seed of the canvases and of the toy prompt sets")
    seen_fraction: float = option(0.2, "toy GenEval prompts per tag whose compositions the training captions hold; "
                                  "the rest are held out of them (geneval/seen_prompts.txt lists the seen ones)",
                                  min=0.0, max=1.0)

    def __post_init__(self):
        check_fields(self)
