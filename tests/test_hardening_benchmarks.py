"""Issue 24, classes 4-5: a benchmark folder is scored only when it holds exactly its prompt set (counts,
sizes, nothing extra), an empty prompt file is an error, the score records what it covered; batches never
exceed --batch-size, and a shard's labels are made for that shard only."""
from __future__ import annotations

import json
import shutil
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from tensorar.errors import InputError
from tensorar.evaluation import geneval
from tensorar.stages import sample_prompts as sample_prompts_stage
from tensorar.sampling.labels import class_labels
from tensorar.sampling.sampler import Sampler
from tensorar.stages.score_benchmark import main as score_benchmark

PROMPTS = [{"tag": "single_object", "include": [{"class": "3", "count": 1}], "prompt": "a 3"},
           {"tag": "counting", "include": [{"class": "5", "count": 2}], "prompt": "two 5s"}]


@pytest.fixture(scope="module")
def t2i(tmp_path_factory, tiny):
    return tiny.t2i_files(tmp_path_factory.mktemp("t2i_bench"), PROMPTS)

def run_prompts(t2i, out, prompts, layout="geneval", *extra):
    sample_prompts_stage.main(["--ckpt", str(t2i / "t2i.pt"), "--vq", str(t2i / "vq.pt"), "--encoder", "toy",
                               "--device", "cpu", "--prompts", str(prompts), "--layout", layout, "--out", str(out),
                               *extra])


@pytest.fixture(scope="module")
def generated(t2i, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "images"
    run_prompts(t2i, out, t2i / "geneval.jsonl", "geneval", "--images-per-prompt", "2")
    return out


def write_raw(path, files):
    path.write_text("".join(json.dumps({"filename": f, "metadata": PROMPTS[int(f[:5])], "detections": {}}) + "\n"
                            for f in files))


ALL_FILES = [f"{p:05d}/samples/{j:04d}.png" for p in range(2) for j in range(2)]


def score(images, raw, out, *extra):
    score_benchmark(["geneval", "--images", str(images), "--raw", str(raw), "--out", str(out), *extra])
    return json.loads(out.read_text())


# ----- class 4: never score an incomplete set -----
def test_an_empty_prompt_file_is_an_error(t2i, tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InputError, match="no prompts"):
        run_prompts(t2i, tmp_path / "out", tmp_path / "empty.jsonl")


def test_a_complete_set_is_scored_and_the_score_records_its_coverage(generated, tmp_path):
    write_raw(tmp_path / "raw.jsonl", ALL_FILES)
    result = score(generated, tmp_path / "raw.jsonl", tmp_path / "s.json")
    assert result["covered"]["prompts"] == 2 and result["covered"]["images"] == 4
    assert result["covered"]["images_per_prompt"] == 2 and result["covered"]["image_size"] == 8


@pytest.mark.parametrize("damage", ["missing image", "extra prompt folder", "wrong size", "extra image"])
def test_an_incomplete_or_mixed_folder_is_never_scored(generated, tmp_path, damage):
    images = tmp_path / "images"
    shutil.copytree(generated, images)
    if damage == "missing image":
        (images / "00001" / "samples" / "0001.png").unlink()
    elif damage == "extra prompt folder":
        shutil.copytree(images / "00001", images / "00002")
    elif damage == "wrong size":
        Image.new("RGB", (16, 16)).save(images / "00000" / "samples" / "0000.png")
    else:
        shutil.copy(images / "00000" / "samples" / "0000.png", images / "00000" / "samples" / "0002.png")
    write_raw(tmp_path / "raw.jsonl", ALL_FILES)
    with pytest.raises(InputError, match="images|prompt folders|sizes|generated at"):
        score(images, tmp_path / "raw.jsonl", tmp_path / "s.json")
    assert not (tmp_path / "s.json").exists()


def test_a_raw_file_covering_part_of_the_set_is_never_scored(generated, tmp_path):
    write_raw(tmp_path / "raw.jsonl", ALL_FILES[:3])
    with pytest.raises(InputError, match="1 of 4 missing"):
        score(generated, tmp_path / "raw.jsonl", tmp_path / "s.json")


def test_a_folder_is_checked_against_the_prompt_file(generated, t2i, tmp_path):
    write_raw(tmp_path / "raw.jsonl", ALL_FILES)
    (tmp_path / "other.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PROMPTS[:1]))
    with pytest.raises(InputError, match="another prompt set"):
        score(generated, tmp_path / "raw.jsonl", tmp_path / "s.json", "--prompts", str(tmp_path / "other.jsonl"))
    bare = tmp_path / "bare"  # a folder from elsewhere: no recorded set, so the prompt file is required
    shutil.copytree(generated, bare, ignore=shutil.ignore_patterns("prompts.json", "identity.json"))
    with pytest.raises(InputError, match="--prompts"):
        score(bare, tmp_path / "raw.jsonl", tmp_path / "s.json")
    assert score(bare, tmp_path / "raw.jsonl", tmp_path / "s.json", "--prompts", str(t2i / "geneval.jsonl"),
                 "--images-per-prompt", "2")["covered"]["images"] == 4


def test_dpg_grids_of_the_wrong_size_or_a_missing_item_are_never_scored(t2i, tmp_path):
    grids = tmp_path / "grids"
    run_prompts(t2i, grids, t2i / "dpg", "dpg")
    (tmp_path / "answers.jsonl").write_text("")
    args = ["dpg", "--images", str(grids), "--questions", str(tmp_path / "q.csv"), "--raw",
            str(tmp_path / "answers.jsonl"), "--out", str(tmp_path / "s.json")]
    Image.new("RGB", (20, 20)).save(grids / "itemA.png")
    with pytest.raises(InputError, match="different sizes"):
        score_benchmark(args)
    (grids / "itemA.png").unlink()
    with pytest.raises(InputError, match="1 of 2 missing"):
        score_benchmark(args)


# ----- class 5: memory bounded by --batch-size, labels per shard -----
def test_sample_prompts_batches_never_exceed_batch_size_and_images_do_not_change(t2i, tmp_path, monkeypatch):
    run_prompts(t2i, tmp_path / "whole", t2i / "geneval.jsonl", "geneval", "--images-per-prompt", "3",
                "--batch-size", "8")
    sizes = []
    real = Sampler.tokens

    def recording(sampler, cond, indices, *args, **kwargs):
        sizes.append(len(indices))
        return real(sampler, cond, indices, *args, **kwargs)

    monkeypatch.setattr(Sampler, "tokens", recording)
    run_prompts(t2i, tmp_path / "split", t2i / "geneval.jsonl", "geneval", "--images-per-prompt", "3",
                "--batch-size", "2")
    assert sizes and max(sizes) <= 2 and sum(sizes) == 6
    a, b = geneval.list_samples(tmp_path / "whole"), geneval.list_samples(tmp_path / "split")
    assert [x.filename for x in a] == [y.filename for y in b]
    for x, y in zip(a, b):  # bit-identical: draws depend on (seed, prompt, image) only
        assert np.array_equal(geneval.load_image(x.path), geneval.load_image(y.path))


@pytest.mark.parametrize("kind", ["balanced", "random"])
def test_a_shards_labels_need_no_array_of_all_samples(kind):
    full = class_labels(kind, 1000, 7, seed=3)
    shards = [class_labels(kind, 1000, 7, 3, np.arange(s, min(s + 300, 1000))) for s in range(0, 1000, 300)]
    assert np.array_equal(np.concatenate(shards), full)
    if kind == "balanced":
        assert sorted(np.bincount(full, minlength=7).tolist()) == [142] + [143] * 6
    tracemalloc.start()
    shard = class_labels(kind, 10**12, 1000, 0, np.arange(10**12 - 500, 10**12))  # a trillion samples' last shard
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(shard) == 500 and shard.min() >= 0 and shard.max() < 1000 and peak < 10**6
