"""Issue 24, class 6: a model folder (T5, Janus) has a content identity, so a folder replaced between a kill
and a rerun is not resumed; conditions are tied to the codes whose captions they encode, and checkpoints
to the tokenizer and text encoder they were trained with: a mismatch is an error naming both."""
from __future__ import annotations

import json

import pytest
import torch

from tensorar.toy import captioned_digits
from tensorar.data.conditions import FolderStore
from tensorar.errors import InputError
from tensorar.models.vq import VQConfig, VQModel, vq_checkpoint
from tensorar.stages.encode_captions import main as encode_captions
from tensorar.stages.extract_codes import main as extract_codes
from tensorar.stages.sample_prompts import main as sample_prompts
from tensorar.stages.train import main as train

TINY_VQ = VQConfig(codebook_size=16, codebook_embed_dim=4, encoder_ch_mult=(1, 2, 2), decoder_ch_mult=(1, 2, 2),
                   z_channels=8, base_channels=8, num_res_blocks=1, norm_groups=4)


def make_codes(root, seed):
    captioned_digits.build(root / f"train{seed}", 10, seed=seed)
    torch.manual_seed(0)
    if not (root / "vq.pt").exists():
        torch.save(vq_checkpoint(VQModel(TINY_VQ)), root / "vq.pt")
    extract_codes(["--data", str(root / f"train{seed}"), "--vq", str(root / "vq.pt"), "--out", str(root / f"codes{seed}"),
                   "--image-size", "16", "--augment", "center", "--no-flip"])
    return root / f"codes{seed}"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("identity")
    a, b = make_codes(root, 0), make_codes(root, 1)
    for codes in (a, b):
        encode_captions(["--codes", str(codes), "--encoder", "toy", "--out", str(codes / "conditions-toy")])
    return root, a, b


def tiny_t5(path, seed):
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)] + [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    T5Tokenizer(vocab=vocab, extra_ids=0).save_pretrained(path)
    torch.manual_seed(seed)
    config = T5Config(vocab_size=len(vocab), d_model=16, d_kv=4, num_heads=4, d_ff=32, num_layers=1,
                      feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    T5EncoderModel(config).save_pretrained(path)


def test_a_t5_folder_replaced_between_runs_is_not_resumed(data, tmp_path):
    _, codes, _ = data
    tiny_t5(tmp_path / "t5", seed=0)
    args = ["--codes", str(codes), "--encoder", "t5", "--encoder-path", str(tmp_path / "t5"), "--shard-size", "4"]
    encode_captions([*args, "--out", str(tmp_path / "cond")])
    weights = tmp_path / "t5" / "model.safetensors"
    size = weights.stat().st_size
    tiny_t5(tmp_path / "t5", seed=1)  # another model of the same shapes, written over the first
    assert weights.stat().st_size == size
    encode_captions([*args, "--out", str(tmp_path / "cond")])
    tiny_t5(tmp_path / "fresh", seed=1)
    encode_captions(["--codes", str(codes), "--encoder", "t5", "--encoder-path", str(tmp_path / "fresh"),
                     "--shard-size", "4", "--out", str(tmp_path / "want")])
    got, want = FolderStore(tmp_path / "cond").batch(torch.arange(10)), FolderStore(tmp_path / "want").batch(torch.arange(10))
    assert torch.equal(got["caption"], want["caption"])


def test_large_weight_files_are_identified_by_size_and_mtime(tmp_path, monkeypatch):
    import os

    from tensorar import fileio
    from tensorar.fileio import content_id

    monkeypatch.setattr(fileio, "HASHED_FILE_LIMIT", 4)  # every file here counts as a large weight file
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "weights.bin").write_bytes(b"0123456789")
    before = content_id(tmp_path / "m")
    (tmp_path / "m" / "weights.bin").write_bytes(b"9876543210")  # same size, rewritten
    stat = (tmp_path / "m" / "weights.bin").stat()
    os.utime(tmp_path / "m" / "weights.bin", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert content_id(tmp_path / "m") != before and before.startswith("folder:")


def test_conditions_of_other_codes_are_refused_naming_both(data, tmp_path):
    _, a, b = data
    with pytest.raises(InputError, match="encoded from other codes"):
        train(["--codes", str(b), "--conditions", str(a / "conditions-toy"), "--run-dir", str(tmp_path / "run"),
               "--mode", "base", "--family", "llamagen_t2i", "--preset", "GPT-toy-t2i", "--steps", "1",
               "--global-batch-size", "2", "--device", "cpu"])


def test_a_model_sampled_with_another_tokenizer_is_refused_naming_both(data, tmp_path):
    root, a, _ = data
    run = tmp_path / "run"
    train(["--codes", str(a), "--conditions", str(a / "conditions-toy"), "--run-dir", str(run), "--mode", "base",
           "--family", "llamagen_t2i", "--preset", "GPT-toy-t2i", "--steps", "2", "--global-batch-size", "2",
           "--device", "cpu"])
    torch.manual_seed(1)
    torch.save(vq_checkpoint(VQModel(TINY_VQ)), tmp_path / "other_vq.pt")  # same vocabulary size, other codes
    (tmp_path / "p.jsonl").write_text(json.dumps({"tag": "single_object", "include": [{"class": "3", "count": 1}],
                                                  "prompt": "a 3"}) + "\n")
    args = ["--ckpt", str(run / "final.pt"), "--encoder", "toy", "--device", "cpu", "--prompts", str(tmp_path / "p.jsonl"),
            "--layout", "geneval", "--images-per-prompt", "1"]
    with pytest.raises(InputError, match="trained on codes of tokenizer"):
        sample_prompts([*args, "--vq", str(tmp_path / "other_vq.pt"), "--out", str(tmp_path / "bad")])
    sample_prompts([*args, "--vq", str(root / "vq.pt"), "--out", str(tmp_path / "good")])
    assert (tmp_path / "good" / "prompts.json").is_file()
