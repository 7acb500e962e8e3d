"""Text-to-image training data end to end: captioned canvases -> codes + captions (extract_codes) ->
stored conditions (encode_captions, resumable) -> a text-conditioned backbone trained on them (train
--conditions): the stored features are the encoder's, batched as the backbone interface expects."""
from __future__ import annotations

import json

import pytest
import torch

from tensorar.data.conditions import FolderStore
from tensorar.toy.text import ToyTextEncoder
from tensorar.models.llamagen import GPT
from tensorar.models.loading import load_model
from tensorar.stages.encode_captions import main as encode_captions
from tensorar.stages.train import main as train


@pytest.fixture(scope="module")
def codes(tmp_path_factory, tiny):
    return tiny.captioned_codes(tmp_path_factory.mktemp("t2i_data"))

def encode(codes, out, *extra):
    encode_captions(["--codes", str(codes), "--encoder", "toy", "--out", str(out), "--shard-size", "4",
                     "--batch-size", "3", *extra])


def test_stored_features_are_the_encoders_left_padded(codes, tmp_path):
    encode(codes, tmp_path / "cond")
    captions = [json.loads(line) for line in (codes / "captions.jsonl").read_text().splitlines()]
    store = FolderStore(tmp_path / "cond")
    assert len(store) == len(captions) == 10 and store.kind == "caption_features"
    want = ToyTextEncoder().encode([captions[i] for i in (7, 0, 4)])
    got = store.batch(torch.tensor([7, 0, 4]))  # across shards, out of order
    assert torch.equal(got["caption_mask"], want["caption_mask"])
    torch.testing.assert_close(got["caption"], want["caption"], rtol=0, atol=0)


def test_encoding_resumes_and_refuses_a_changed_encoder(codes, tmp_path):
    encode(codes, tmp_path / "cond")
    shard = tmp_path / "cond" / "lengths_00001.npy"
    kept = (tmp_path / "cond" / "lengths_00000.npy").stat().st_mtime_ns
    shard.unlink()  # the job died while writing shard 1
    encode(codes, tmp_path / "cond")
    assert shard.is_file() and (tmp_path / "cond" / "lengths_00000.npy").stat().st_mtime_ns == kept
    before = FolderStore(tmp_path / "cond").batch(torch.arange(10))["caption"]
    encode(codes, tmp_path / "cond", "--dim", "16")  # another encoder: its shards replace the old ones
    after = FolderStore(tmp_path / "cond").batch(torch.arange(10))["caption"]
    assert before.shape[-1] == 32 and after.shape[-1] == 16


def test_a_text_conditioned_backbone_trains_on_the_stored_conditions(codes, tmp_path):
    encode(codes, tmp_path / "cond")
    run = tmp_path / "run"
    train(["--codes", str(codes), "--conditions", str(tmp_path / "cond"), "--run-dir", str(run), "--mode", "base",
           "--family", "llamagen_t2i", "--preset", "GPT-toy-t2i", "--steps", "6", "--global-batch-size", "4",
           "--lr-base", "3e-3", "--log-every", "1", "--dropout", "0", "--device", "cpu"])
    model = load_model(run / "final.pt")
    assert isinstance(model, GPT) and model.config.model_type == "t2i" and model.config.block_size == 16
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(log) == 6 and all(torch.isfinite(torch.tensor(r["loss"])) for r in log)


def test_training_without_the_conditions_names_the_missing_folder(codes, tmp_path):
    with pytest.raises(FileNotFoundError, match="encode_captions"):
        train(["--codes", str(codes), "--conditions", str(tmp_path / "absent"), "--run-dir", str(tmp_path / "r"),
               "--mode", "base", "--family", "llamagen_t2i", "--preset", "GPT-toy-t2i", "--steps", "1",
               "--device", "cpu"])
