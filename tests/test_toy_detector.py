"""The toy detector (ours) and the whole toy benchmark: a digits classifier trained here in seconds, ground
truth canvases drawn FOR the toy prompts, scored by the real GenEval and DPG-Bench scorers through the raw
files, must score near the top; the same canvases given to the wrong prompts, near chance."""
from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from tensorar.toy import benchmarks
from tensorar.toy import captioned_digits as cd
from tensorar.toy.digits import load_digits_rgb, split_indices
from tensorar.evaluation import dpg, geneval
from tensorar.toy.detector import (
    CellDetection,
    ToyDetector,
    answer_question,
    color_of,
    write_dpg_answers,
    write_geneval_detections,
)
from tensorar.toy.features import ToyClassifier, ToyClassifierConfig
from tensorar.errors import InputError
from tensorar.fileio import atomic_torch_save
from tensorar.stages.train_classifier import accuracy, train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A digits classifier at the cell size (8 px) on make_digits' train split: ~5 s on one thread."""
    images, labels = load_digits_rgb(8)
    split = split_indices(labels)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    torch.manual_seed(0)
    model = ToyClassifier(ToyClassifierConfig(image_size=8))
    train(model, x[split["train"]], y[split["train"]], steps=300, batch_size=128, lr=3e-3, seed=0, progress=False)
    val_accuracy = accuracy(model, x[split["val"]], y[split["val"]])
    assert val_accuracy > 0.95
    path = tmp_path_factory.mktemp("cls") / "CLS.pt"  # train_classifier's checkpoint layout
    atomic_torch_save({"kind": "toy_classifier", "config": asdict(model.config), "model": model.state_dict(),
                       "classes": list(cd.CLASSES), "step": 300, "val_accuracy": val_accuracy}, path)
    return path


@pytest.fixture(scope="module")
def detector(checkpoint) -> ToyDetector:
    return ToyDetector.from_checkpoint(checkpoint)


def test_color_is_the_palette_chromaticity_even_for_dim_ink():
    for name, rgb in cd.PALETTE.items():
        for level in (1, 4, 16):  # of 16
            crop = np.zeros((8, 8, 3), np.uint8)
            crop[2:6, 3:5] = (np.asarray(rgb) * level + 8) // 16
            assert color_of(crop) == name
    assert color_of(np.full((8, 8, 3), (200, 40, 30), np.uint8)) == "red"


def test_detections_are_the_filled_cells_with_their_box_class_and_colour(detector):
    items = cd.generate(100, seed=3, split="val")
    found = detector.find(np.stack([it.image for it in items]))
    hits = total = 0
    for it, dets in zip(items, found):
        assert [d.cell for d in dets] == [k for k, c in enumerate(it.cells) if c]  # no missed or phantom cells
        for d in dets:
            cell = it.cells[d.cell]
            assert d.box == tuple(cd.cell_box(d.cell)) and d.color == cell.color and 0 < d.score <= 1
            hits += d.label == cell.digit
            total += 1
    assert hits / total > 0.95
    # The Detector protocol: every class in order, boxes and scores, the same as `find`.
    dets = detector.detect(items[0].image)
    assert list(dets) == list(cd.CLASSES)
    assert sum(len(d.scores) for d in dets.values()) == len(found[0])
    # Larger canvases (cells of 16 px) give the same detections.
    big = cd.generate(10, seed=3, split="val", cell_size=16)
    for a, b in zip(found[:10], detector.find(np.stack([it.image for it in big]))):
        assert [(d.cell, d.label, d.color) for d in a] == [(d.cell, d.label, d.color) for d in b]


def test_from_checkpoint_refuses_a_classifier_of_other_classes(checkpoint, tmp_path):
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["classes"] = list("abcdefghij")
    torch.save(ckpt, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not the digits"):
        ToyDetector.from_checkpoint(tmp_path / "other.pt")


def _det(cell: int, label: str, color: str, score: float = 0.99) -> CellDetection:
    return CellDetection(cell, tuple(cd.cell_box(cell)), label, score, color)


def test_questions_of_every_toy_template():
    dets = [_det(0, "3", "red"), _det(3, "7", "blue"), _det(1, "5", "green"), _det(2, "5", "green"),
            _det(2, "8", "white", score=0.2)]  # below the answer threshold: not seen
    black = np.zeros((16, 16, 3), np.uint8)
    expected = {
        "Is there a 3?": "yes", "Is there a 4?": "no", "Is there an 8?": "no",
        "Are there two 5s?": "yes", "Are there three 5s?": "no",
        "Is the 3 red?": "yes", "Is the 3 blue?": "no", "Are the 5s green?": "yes", "Are the 5s red?": "no",
        "Is the 3 to the left of the 7?": "yes", "Is the 3 above the 7?": "yes",  # diagonal: both
        "Is the 3 to the right of the 7?": "no", "Is the 7 below the 3?": "yes",
        "Is the 5 above the 3?": "no",  # one 5 is right of the 3, the other below it
        "Is the background black?": "yes",
    }
    assert {q: answer_question(q, dets, black) for q in expected} == expected
    assert answer_question("Is the background black?", [], np.full((16, 16, 3), 90, np.uint8)) == "no"
    with pytest.raises(ValueError, match="cannot answer"):
        answer_question("Is the cat black?", dets, black)
    for item in benchmarks.toy_dpg_items():  # every question the toy CSV asks is understood
        for row in item.questions():
            answer_question(row["question_natural_language"], dets, black)


def test_geneval_ground_truth_near_one_shuffled_near_chance(detector, tmp_path):
    metadata = benchmarks.write_toy_geneval(tmp_path / "prompts")
    rng = np.random.default_rng(0)
    images = [cd.render_metadata(m, rng, split="val").image for m in metadata for _ in range(4)]  # held-out glyphs
    shuffled = [images[j] for j in np.random.default_rng(1).permutation(len(images))]
    summaries = {}
    for name, imgs in (("truth", images), ("shuffled", shuffled)):
        for i, m in enumerate(metadata):
            geneval.write_prompt_images(tmp_path / name, i, m, imgs[4 * i:4 * i + 4])
        assert write_geneval_detections(tmp_path / name, detector, tmp_path / f"{name}.jsonl") == len(images)
        summaries[name] = geneval.summarize(geneval.score_raw_detections(tmp_path / f"{name}.jsonl"))
    print("toy GenEval:", {k: {t: round(v, 3) for t, v in s.items()} for k, s in summaries.items()})
    truth, shuf = summaries["truth"], summaries["shuffled"]
    assert list(truth) == list(geneval.TABLE_COLUMNS)
    # Counting needs every copy classified right at > 0.9 confidence (GenEval's counting threshold).
    assert truth["counting"] >= 0.75 and truth["overall"] >= 0.9
    assert all(truth[t] >= 0.85 for t in geneval.TAGS if t != "counting")
    assert shuf["overall"] <= 0.1 and all(shuf[t] <= 0.2 for t in geneval.TAGS)


def test_dpg_ground_truth_near_hundred_shuffled_near_chance(detector, tmp_path):
    items = benchmarks.write_toy_dpg(tmp_path / "dpg")
    csv_path = tmp_path / "dpg" / "dpg_bench.csv"
    rng = np.random.default_rng(0)
    grids = [benchmarks.render_dpg_item(item, rng, split="val") for item in items]
    perm = np.random.default_rng(2).permutation(len(items))
    results = {}
    for name, order in (("truth", range(len(items))), ("shuffled", perm)):
        for item, j in zip(items, order):
            dpg.write_grid(tmp_path / name, item.item_id, grids[j])
        assert write_dpg_answers(csv_path, tmp_path / name, detector, tmp_path / f"{name}.jsonl") == len(items)
        for quirks in (True, False):
            results[name, quirks] = dpg.score_answers_file(csv_path, tmp_path / f"{name}.jsonl",
                                                           official_quirks=quirks)
    print("toy DPG:", {f"{n} quirks={q}": (round(r.score, 2), {c: round(v, 1) for c, v in r.l1.items()})
                       for (n, q), r in results.items()})
    for quirks in (True, False):
        truth, shuf = results["truth", quirks], results["shuffled", quirks]
        assert not truth.failed and len(truth.image_scores) == len(items)
        assert truth.score >= 90 and shuf.score <= 30
    # The in-process path (ToyDetector as dpg's VQA model on the grids) gives the same answers.
    in_process = dpg.score_folder(csv_path, tmp_path / "truth", detector, resolution=16)
    assert in_process.crop_scores == results["truth", True].crop_scores


def test_batched_raw_detections_score_as_the_official_export(detector, tmp_path):
    metadata = benchmarks.toy_geneval_metadata()[::9]  # every tag
    rng = np.random.default_rng(4)
    for i, m in enumerate(metadata):
        geneval.write_prompt_images(tmp_path / "s", i, m, [cd.render_metadata(m, rng).image for _ in range(4)])
    write_geneval_detections(tmp_path / "s", detector, tmp_path / "ours.jsonl", batch_size=7)
    geneval.export_raw_detections(tmp_path / "s", detector, detector, tmp_path / "official.jsonl")
    runs = [geneval.score_raw_detections(tmp_path / f) for f in ("ours.jsonl", "official.jsonl")]
    runs.append(geneval.score_folder(tmp_path / "s", detector, detector))

    def essence(records):  # scores differ in the last bits with the batch a canvas is classified in
        return [(r["filename"], r["correct"], r["reason"],
                 {k: np.round(v, 4).tolist() for k, v in json.loads(r["details"]).items()}) for r in records]

    assert essence(runs[0]) == essence(runs[1]) == essence(runs[2])


def test_make_captions_then_score_benchmark_stages(checkpoint, tmp_path):
    """The two toy stages end to end: make_captions writes the prompt sets, ground-truth canvases for them
    are scored by `score_benchmark --toy-classifier`; its raw file, read back through `--raw` (the
    official detector's path), gives the same scores."""
    from tensorar.stages.make_captions import main as make_captions
    from tensorar.stages.score_benchmark import main as score_benchmark

    make_captions(["--out", str(tmp_path / "toy"), "--num-train", "6", "--num-val", "3"])
    stamp = (tmp_path / "toy" / "train" / "captions.jsonl").stat().st_mtime_ns
    make_captions(["--out", str(tmp_path / "toy"), "--num-train", "6", "--num-val", "3"])  # a rerun: a no-op
    assert (tmp_path / "toy" / "train" / "captions.jsonl").stat().st_mtime_ns == stamp
    assert len((tmp_path / "toy" / "val" / "captions.jsonl").read_text().splitlines()) == 3

    metadata = [json.loads(line) for line in
                (tmp_path / "toy" / "geneval" / "evaluation_metadata.jsonl").read_text().splitlines()][::6]
    rng = np.random.default_rng(0)
    for i, m in enumerate(metadata):
        geneval.write_prompt_images(tmp_path / "gen", i, m, [cd.render_metadata(m, rng, split="val").image] * 2)
    (tmp_path / "subset.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metadata))
    out = tmp_path / "scores" / "geneval.json"
    score_benchmark(["geneval", "--images", str(tmp_path / "gen"), "--toy-classifier", str(checkpoint),
                     "--prompts", str(tmp_path / "subset.jsonl"), "--images-per-prompt", "2",
                     "--out", str(out), "--bootstrap", "20"])
    toy = json.loads(out.read_text())
    assert toy["num_images"] == 2 * len(metadata) and toy["detector"] == "toy (ours)"
    assert set(toy["scores"]) == set(geneval.TABLE_COLUMNS) and toy["scores"]["overall"] >= 0.8
    assert (tmp_path / "scores" / "geneval.results.jsonl").is_file()
    replicates = toy["overall_bootstrap"]["replicates"]  # resampled within tags: each between 0 and 1
    assert len(replicates) == 20 and all(0 <= r <= 1 for r in replicates)
    again = tmp_path / "scores" / "official.json"
    (tmp_path / "seen.txt").write_text(metadata[0]["prompt"] + "\n" + metadata[-1]["prompt"] + "\n")
    score_benchmark(["geneval", "--images", str(tmp_path / "gen"), "--raw", toy["raw"], "--out", str(again),
                     "--prompts", str(tmp_path / "subset.jsonl"), "--images-per-prompt", "2",
                     "--seen-prompts", str(tmp_path / "seen.txt")])
    official = json.loads(again.read_text())
    assert official["scores"] == toy["scores"]
    subsets = official["subsets"]  # ours: the prompts whose compositions training held, and the rest
    assert subsets["seen_prompts"] == 2 and subsets["seen"]["num_images"] == 4
    assert subsets["unseen"]["num_images"] == 2 * len(metadata) - 4
    assert set(subsets["seen"]["scores"]) == {metadata[0]["tag"], metadata[-1]["tag"], "overall"}
    (tmp_path / "stranger.txt").write_text("a prompt of no image\n")
    with pytest.raises(InputError, match="not in the scored set"):
        score_benchmark(["geneval", "--images", str(tmp_path / "gen"), "--raw", toy["raw"], "--out", str(again),
                         "--prompts", str(tmp_path / "subset.jsonl"), "--images-per-prompt", "2",
                         "--seen-prompts", str(tmp_path / "stranger.txt")])

    items = benchmarks.toy_dpg_items()[:5]
    (tmp_path / "prompts").mkdir()
    for item in items:
        dpg.write_grid(tmp_path / "grids", item.item_id, benchmarks.render_dpg_item(item, rng, split="val"))
        (tmp_path / "prompts" / f"{item.item_id}.txt").write_text(item.prompt)
    out = tmp_path / "scores" / "dpg.json"
    score_benchmark(["dpg", "--images", str(tmp_path / "grids"), "--prompts", str(tmp_path / "prompts"), "--questions",
                     str(tmp_path / "toy" / "dpg" / "dpg_bench.csv"), "--toy-classifier", str(checkpoint),
                     "--out", str(out)])
    scored = json.loads(out.read_text())
    assert scored["num_images"] == len(items) and scored["scores"]["overall"] >= 80
    with pytest.raises(SystemExit):  # exactly one source of raw outputs
        score_benchmark(["geneval", "--images", str(tmp_path / "gen"), "--out", str(out)])
