"""tensorar sample_prompts: a text-to-image model writes GenEval's and DPG-Bench's layouts, with images
that depend on (seed, prompt, image) only, resumably."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tensorar.toy.text import ToyTextEncoder
from tensorar.evaluation import dpg, geneval
from tensorar.stages.sample_prompts import main

PROMPTS = [{"tag": "single_object", "include": [{"class": "3", "count": 1}], "prompt": "a 3"},
           {"tag": "colors", "include": [{"class": "7", "count": 1, "color": "red"}], "prompt": "a red 7"},
           {"tag": "counting", "include": [{"class": "5", "count": 2}], "exclude": [{"class": "5", "count": 3}],
            "prompt": "two 5s"}]


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny):
    return tiny.t2i_files(tmp_path_factory.mktemp("t2i"), PROMPTS)

def run(files, out, *extra):
    main(["--ckpt", str(files / "t2i.pt"), "--vq", str(files / "vq.pt"), "--encoder", "toy", "--device", "cpu",
          "--out", str(out), "--cfg-scale", "2.0", *extra])


def test_geneval_layout_and_batch_invariance(files, tmp_path):
    run(files, tmp_path / "a", "--prompts", str(files / "geneval.jsonl"), "--layout", "geneval", "--batch-size", "4")
    run(files, tmp_path / "b", "--prompts", str(files / "geneval.jsonl"), "--layout", "geneval", "--batch-size", "12")
    samples = geneval.list_samples(tmp_path / "a")
    assert len(samples) == 3 * 4 and samples[0].metadata == PROMPTS[0]
    for x, y in zip(samples, geneval.list_samples(tmp_path / "b")):
        assert np.array_equal(geneval.load_image(x.path), geneval.load_image(y.path))
    images = [geneval.load_image(s.path) for s in samples[:4]]
    assert images[0].shape == (8, 8, 3) and not all(np.array_equal(images[0], im) for im in images[1:])


def test_a_killed_run_resumes_at_the_missing_prompt(files, tmp_path, capsys):
    args = ("--prompts", str(files / "geneval.jsonl"), "--layout", "geneval")
    run(files, tmp_path / "s", *args)
    before = geneval.load_image(tmp_path / "s" / "00001" / "samples" / "0002.png")
    (tmp_path / "s" / "00001" / "metadata.jsonl").unlink()  # the job died before prompt 1 was complete
    run(files, tmp_path / "s", *args, "--stats-json", str(tmp_path / "st.json"))
    assert json.loads((tmp_path / "st.json").read_text())["prompts_generated"] == 1
    assert np.array_equal(before, geneval.load_image(tmp_path / "s" / "00001" / "samples" / "0002.png"))
    run(files, tmp_path / "s", *args, "--seed", "3")  # other settings: everything is made again
    assert "starting fresh" in capsys.readouterr().err


def test_dpg_grids(files, tmp_path):
    run(files, tmp_path / "g", "--prompts", str(files / "dpg"), "--layout", "dpg")
    grid = dpg.read_grid(tmp_path / "g" / "itemA.png")
    assert grid.shape == (16, 16, 3) and len(dpg.crop_grid(grid, 8)) == 4
    assert sorted(p.name for p in (tmp_path / "g").glob("*.png")) == ["itemA.png", "itemB.png"]


def test_toy_text_encoder_layout():
    enc = ToyTextEncoder(dim=8, max_tokens=5)
    out = enc.encode(["a red 3", ""])
    assert out["caption"].shape == (2, 5, 8) and out["caption_mask"].tolist() == [[False, False, True, True, True],
                                                                                  [False] * 5]
    assert torch.equal(out["caption"][1], torch.zeros(5, 8))  # padded positions are zero
    assert torch.equal(enc.encode(["a red 3"])["caption"][0], out["caption"][0])  # batch independent
    assert not torch.equal(enc.encode(["a 3 red"])["caption"], enc.encode(["a red 3"])["caption"])  # order matters
