"""Issue 24, classes 1-2: a stage deletes only what its own identity record says it made, refuses
another job's folder or files it did not make, and never leaves a store that looks complete but is not
(real processes killed with SIGKILL at a chosen file, through fileio's TENSORAR_KILL_BEFORE hook)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from tensorar.data.conditions import FolderStore
from tensorar.errors import InputError
from tensorar.stages.encode_captions import main as encode_captions
from tensorar.stages.sample_prompts import main as sample_prompts
from tensorar.stages.train import main as train


@pytest.fixture(scope="module")
def codes(tmp_path_factory, tiny):
    return tiny.captioned_codes(tmp_path_factory.mktemp("t2i_codes"))

def encode_args(codes, out, *extra):
    return ["--codes", str(codes), "--encoder", "toy", "--out", str(out), "--shard-size", "4", "--batch-size", "3",
            *extra]


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
            and p.name != ".lock"}


# ----- class 1: never delete what the stage did not make -----
def test_encode_captions_pointed_at_the_codes_folder_deletes_nothing(codes):
    before = snapshot(codes)
    with pytest.raises(InputError, match="nothing was deleted"):
        encode_captions(encode_args(codes, codes))
    assert snapshot(codes) == before  # code shards and the codes' identity record untouched


@pytest.fixture(scope="module")
def t2i(tmp_path_factory, tiny):
    prompts = [{"tag": "single_object", "include": [{"class": "3", "count": 1}], "prompt": "a 3"},
               {"tag": "counting", "include": [{"class": "5", "count": 2}], "prompt": "two 5s"}]
    return tiny.t2i_files(tmp_path_factory.mktemp("t2i_model"), prompts)


def run_prompts(t2i, out, *extra):
    sample_prompts(["--ckpt", str(t2i / "t2i.pt"), "--vq", str(t2i / "vq.pt"), "--encoder", "toy", "--device", "cpu",
                    "--prompts", str(t2i / "geneval.jsonl"), "--layout", "geneval", "--out", str(out),
                    "--images-per-prompt", "2", *extra])


def test_sample_prompts_on_a_folder_without_a_record_deletes_nothing(t2i, tmp_path):
    out = tmp_path / "photos"
    (out / "00000").mkdir(parents=True)
    (out / "00000" / "wedding.jpg").write_bytes(b"precious")
    (out / "holiday.png").write_bytes(b"precious too")
    before = snapshot(out)
    with pytest.raises(InputError, match="no identity.json"):
        run_prompts(t2i, out)
    assert snapshot(out) == before


def test_sample_prompts_replaces_only_its_own_files_on_a_changed_identity(t2i, tmp_path):
    out = tmp_path / "s"
    run_prompts(t2i, out, "--seed", "0")
    first = (out / "00000" / "samples" / "0000.png").read_bytes()
    (out / "notes.txt").write_text("mine")  # the user's file in the job's folder: not the job's to delete
    with pytest.raises(InputError, match="notes.txt"):  # ... nor part of the prompt set
        run_prompts(t2i, out, "--seed", "1")
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "identity.json").read_text())["identity"]["seed"] == 1
    assert (out / "00000" / "samples" / "0000.png").read_bytes() != first  # its own images were replaced


def test_a_run_dir_from_an_older_version_is_refused_not_deleted(codes, tmp_path):
    encode_captions(encode_args(codes, tmp_path / "cond"))
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"step": 3}, run / "checkpoints" / "step_00000003.pt")  # an older version: no identity record
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    before = snapshot(run)
    with pytest.raises(InputError, match="older version"):
        train(["--codes", str(codes), "--conditions", str(tmp_path / "cond"), "--run-dir", str(run), "--mode", "base",
               "--family", "llamagen_t2i", "--preset", "GPT-toy-t2i", "--steps", "1", "--global-batch-size", "2",
               "--device", "cpu"])
    after = snapshot(run)
    after.pop("train.log", None)
    assert after == before


# ----- class 2: a store marked complete is complete -----
def run_killed(args, kill_before):
    env = {**os.environ, "TENSORAR_KILL_BEFORE": kill_before}
    proc = subprocess.Popen([sys.executable, "-m", "tensorar", "encode_captions", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err.decode()


def test_a_shard_killed_between_its_files_is_redone_on_rerun(codes, tmp_path):
    encode_captions(encode_args(codes, tmp_path / "clean"))
    out = tmp_path / "cond"
    run_killed(encode_args(codes, out), "valid_00001.npy")  # shard 1 half written
    encode_captions(encode_args(codes, out))
    got, want = FolderStore(out).batch(torch.arange(10)), FolderStore(tmp_path / "clean").batch(torch.arange(10))
    assert torch.equal(got["caption"], want["caption"]) and torch.equal(got["caption_mask"], want["caption_mask"])


def test_a_changed_identity_marks_the_manifest_incomplete_before_any_shard(codes, tmp_path):
    out = tmp_path / "cond"
    encode_captions(encode_args(codes, out))
    run_killed(encode_args(codes, out, "--dim", "16"), "valid_00000.npy")
    with pytest.raises(InputError, match="did not finish"):
        FolderStore(out)
    encode_captions(encode_args(codes, out, "--dim", "16"))
    assert FolderStore(out).batch(torch.arange(10))["caption"].shape[-1] == 16
