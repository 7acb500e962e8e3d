"""tensorar.evaluation.floor: the shuffled-caption floor of a GenEval score, on raw detections whose answers
are known (a model that draws exactly what it is asked scores 1 on its own prompts, 0 on shuffled ones)."""
from __future__ import annotations

import json

import pytest

from tensorar.evaluation import geneval
from tensorar.evaluation.floor import shuffled_caption_overall

CLASSES = ("cat", "dog", "car", "bus", "cup")


def single(name):
    return {"tag": "single_object", "include": [{"class": name, "count": 1}], "prompt": f"a photo of a {name}"}


def colored(name, color):
    return {"tag": "colors", "include": [{"class": name, "count": 1, "color": color}],
            "prompt": f"a photo of a {color} {name}"}


def write_raw(path, entries):
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


def image(i, metadata, name, color=None):
    return {"filename": f"{i:05d}/samples/0000.png", "metadata": metadata,
            "detections": {name: {"boxes": [[0, 0, 10, 10]], "scores": [0.99], "colors": [color]}}}


def test_a_model_that_follows_its_prompts_scores_one_and_its_floor_zero(tmp_path):
    raw = write_raw(tmp_path / "raw.jsonl", [image(i, single(n), n, "red") for i, n in enumerate(CLASSES)
                                             for _ in range(4)])
    assert geneval.summarize(geneval.score_raw_detections(raw))["overall"] == 1.0
    assert shuffled_caption_overall(raw, seed=0) == 0.0  # every prompt judged against another: no own caption
    assert shuffled_caption_overall(raw, seed=1) == 0.0


def test_a_model_that_ignores_its_prompts_scores_the_same_as_its_floor(tmp_path):
    # Every image shows a cat, whatever the prompt: own and shuffled captions score alike (1 in 5 prompts).
    raw = write_raw(tmp_path / "raw.jsonl", [image(i, single(n), "cat", "red") for i, n in enumerate(CLASSES)])
    own = geneval.summarize(geneval.score_raw_detections(raw))["overall"]
    assert own == pytest.approx(0.2) and shuffled_caption_overall(raw, seed=3) == pytest.approx(own)


def test_a_colour_never_classified_counts_as_not_correct(tmp_path):
    # As the official evaluator stores them: colours only where the own prompt asked for one.
    raw = write_raw(tmp_path / "raw.jsonl", [image(0, single("cat"), "cat"), image(1, colored("cat", "red"), "cat", "red")])
    # The single-object prompt judged against "a red cat" has no colour for its cat: not correct; the other way
    # round, the red cat passes "a photo of a cat".
    assert shuffled_caption_overall(raw, seed=0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least 2 prompts"):
        shuffled_caption_overall(write_raw(tmp_path / "one.jsonl", [image(0, single("cat"), "cat")]))
