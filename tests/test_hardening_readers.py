"""Issue 24, classes 3 and 7: captioned-data readers lose nothing silently (a truncated shard, keys
without an image or a caption, duplicate keys, non-string captions), and every parse error names the file
(and line or member), including a code-executing pickle, the toy classifier and another family's file."""
from __future__ import annotations

import io
import os
import tarfile

import pytest
import torch
from PIL import Image

from tensorar.checkpoint import read_checkpoint
from tensorar.data.captions import CaptionedImages
from tensorar.errors import InputError
from tensorar.evaluation import dpg, geneval


def png_bytes(value=0) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (value, value, value)).save(buf, format="PNG")
    return buf.getvalue()


def write_tar(path, members):
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def items(n, start=0):
    return [m for i in range(start, start + n) for m in ((f"k{i}.png", png_bytes(i)), (f"k{i}.txt", f"cap {i}".encode()))]


# ----- class 3: silent loss of input items -----
def test_a_truncated_shard_is_an_error_unless_a_partial_set_is_kept(tmp_path, caplog):
    shard = write_tar(tmp_path / "a.tar", items(3))
    whole = shard.read_bytes()
    members = tarfile.open(shard).getmembers()
    shard.write_bytes(whole[: members[-1].offset_data + 3])  # cut inside the last caption
    with pytest.raises(InputError, match="truncated"):
        CaptionedImages(shard)
    from tensorar.data.captions import CaptionReading

    kept = CaptionedImages(shard, reading=CaptionReading(keep_partial_shards=True))
    assert len(kept) == 2 and kept.captions == ["cap 0", "cap 1"]
    assert kept.report.as_dict() == {"truncated shards (their items before the cut kept)": 1,
                                     "members of the key at the cut of a truncated shard (dropped)": 2}


def test_a_shard_cut_at_a_member_boundary_is_truncated_too(tmp_path):
    shard = write_tar(tmp_path / "a.tar", items(3))
    members = tarfile.open(shard).getmembers()
    shard.write_bytes(shard.read_bytes()[: members[-2].offset])  # the last key's files are gone entirely
    with pytest.raises(InputError, match="truncated"):
        CaptionedImages(shard)


def test_keys_without_image_or_caption_and_duplicate_keys_are_errors_unless_allowed(tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    write_tar(folder / "000.tar", [*items(2), ("lonely.png", png_bytes()), ("mute.txt", b"no image")])
    write_tar(folder / "001.tar", items(2, start=1))  # k1 again
    with pytest.raises(InputError, match="without"):
        CaptionedImages(folder)
    from tensorar.data.captions import CaptionReading

    data = CaptionedImages(folder, reading=CaptionReading(skip_bad_items=True))
    assert data.captions == ["cap 0", "cap 1", "cap 2"]
    report = data.report.as_dict()
    assert report["without a caption (dropped)"] == 1 and report["without an image (dropped)"] == 1
    assert sum(n for reason, n in report.items() if "already in" in reason) == 1


def test_a_duplicate_member_in_one_shard_is_reported(tmp_path):
    shard = write_tar(tmp_path / "a.tar", [*items(1), ("k0.txt", b"another caption")])
    with pytest.raises(InputError, match="duplicate"):
        CaptionedImages(shard)


def test_non_string_captions_are_rejected_with_file_and_line_or_member(tmp_path):
    (tmp_path / "img.png").write_bytes(png_bytes())
    (tmp_path / "captions.jsonl").write_text('{"image": "img.png", "caption": "ok"}\n'
                                             '{"image": "img.png", "caption": null}\n')
    with pytest.raises(InputError, match=r"captions.jsonl:2: the caption must be a string"):
        CaptionedImages(tmp_path / "captions.jsonl")
    shard = write_tar(tmp_path / "a.tar", [("k0.png", png_bytes()), ("k0.json", b'{"caption": 7}')])
    with pytest.raises(InputError, match=r"a.tar:k0.json: 'caption' must be a string"):
        CaptionedImages(shard)


# ----- class 7: errors that name the file -----
def test_parse_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "meta.jsonl"
    bad.write_text('{"tag": "single_object", "include": [], "prompt": "p"}\n{"tag": \n')
    with pytest.raises(InputError, match=r"meta.jsonl:2: not valid JSON"):
        geneval.load_metadata(bad)
    answers = tmp_path / "answers.jsonl"
    answers.write_text('{"item_id": "a", "crop": 0, "answers": {}}\nnot json\n')
    with pytest.raises(InputError, match=r"answers.jsonl:2"):
        dpg.read_answers(answers)
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "item.txt").write_bytes(b"\xff\xfe bad bytes")
    with pytest.raises(InputError, match=r"item.txt: not UTF-8"):
        dpg.load_prompts(prompts)


def test_a_broken_conditions_manifest_and_image_name_their_file(tmp_path):
    from tensorar.data.conditions import FolderStore

    (tmp_path / "cond").mkdir()
    (tmp_path / "cond" / "conditions.json").write_text('{"complete": tru')
    with pytest.raises(InputError, match=r"conditions.json:1"):
        FolderStore(tmp_path / "cond")
    (tmp_path / "img.png").write_bytes(b"not a png")
    (tmp_path / "captions.jsonl").write_text('{"image": "img.png", "caption": "x"}\n')
    with pytest.raises(InputError, match=r"img.png: not a readable image"):
        CaptionedImages(tmp_path / "captions.jsonl")[0]
    shard = write_tar(tmp_path / "a.tar", [("k0.png", b"garbage"), ("k0.txt", b"x")])
    with pytest.raises(InputError, match=r"a.tar:k0.png: not a readable image"):
        CaptionedImages(shard)[0]


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def test_a_code_executing_pickle_is_named_as_such_not_as_truncated(tmp_path, monkeypatch):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": RunsCode()}, path)
    with pytest.raises(RuntimeError) as err:  # UnsafeCheckpoint: a user error, no traceback
        read_checkpoint(path)
    assert "truncated" not in str(err.value) and "system" in str(err.value) and "executes code" in str(err.value)
    monkeypatch.setenv("TENSORAR_ALLOW_UNSAFE_PICKLE", "1")  # a blocked module is refused even when opted in
    with pytest.raises(RuntimeError, match="refused even with"):
        read_checkpoint(path)


def test_the_toy_classifier_goes_through_the_checkpoint_reader(tmp_path):
    from tensorar.checkpoint import UnreadableCheckpoint
    from tensorar.toy.features import ToyFeatureExtractor

    path = tmp_path / "cls.pt"
    path.write_bytes(b"PK\x03\x04 half a zip")
    with pytest.raises(UnreadableCheckpoint, match="cls.pt cannot be read"):
        ToyFeatureExtractor.from_checkpoint(path)
    torch.save({"config": {}, "payload": RunsCode()}, path)
    with pytest.raises(RuntimeError, match="executes code"):
        ToyFeatureExtractor.from_checkpoint(path)


def test_another_familys_file_and_a_released_tokenizer_without_preset_give_the_hint(tiny, tmp_path):
    from tensorar.models.lfq import LFQConfig, LFQModel
    from tensorar.models.loading import load_model, load_tokenizer
    from tensorar.models.open_magvit2 import OpenMAGVIT2, OpenMAGVIT2Config

    omv = OpenMAGVIT2(OpenMAGVIT2Config(dim=32, spatial_n_layer=1, factorized_n_layer=1, n_head=2, multiple_of=32,
                                        factorized_bits=(2, 2), num_classes=4, block_size=4))
    torch.save({"state_dict": {f"transformer.{k}": v for k, v in omv.state_dict().items()}}, tmp_path / "AR.ckpt")
    with pytest.raises(InputError, match="not a llamagen checkpoint.*\n.*huggingface"):
        load_model(tmp_path / "AR.ckpt", "llamagen", "GPT-B")
    lfq = LFQModel(LFQConfig(base_channels=8, ch_mult=(1, 2), num_res_blocks=1, z_channels=4, factorized_bits=(2, 2),
                             norm_groups=4))
    torch.save({"state_dict": lfq.state_dict()}, tmp_path / "imagenet_256_L.ckpt")
    with pytest.raises(InputError, match="--vq-preset LFQ-256"):
        load_tokenizer(tmp_path / "imagenet_256_L.ckpt")


def test_a_damaged_model_folder_names_the_folder(tmp_path):
    from tensorar.models.loading import load_model, load_tokenizer

    folder = tmp_path / "janus"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "janus", ')  # a partial download
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header")
    with pytest.raises(InputError, match=r"janus: the model folder cannot be loaded .*model.safetensors"):
        load_model(folder, "janus", "Janus-Pro-7B")
    with pytest.raises(InputError, match=r"janus: the model folder cannot be loaded"):
        load_tokenizer(folder, "Janus-VQ16")
