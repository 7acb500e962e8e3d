"""Captioned image datasets (text-to-image training data): an image and its caption per item, in a fixed
order, with random access so extraction can be sharded and resumed like an ImageFolder's.

Two layouts are read:
- JSONL, for small sets and the embedded toy: `captions.jsonl` with one {"image": PATH, "caption": TEXT}
  per line, PATH relative to the file's folder (`DIR/images/<id>.png` + `DIR/captions.jsonl` is what
  `tensorar make_captions` writes). `--data` is the .jsonl file or its folder.
- webdataset tar shards, the layout of BLIP3o's datasets (BLIP3o-60k, BLIP3o-Pretrain-*) and of most
  large text-image sets: members grouped by key (the path before the first dot of the file name, the
  convention of the `webdataset` package, whose splitter we use), an image (.jpg/.jpeg/.png/.webp) and
  a caption (.txt, or .json with "caption", "text" or "prompt") per key. `--data` is a brace pattern
  ("blip3o/{000000..000099}.tar") or a folder of .tar files (sorted).
Tar members are read by offset (an index of the headers is built once), so item i is the same file
for every rank and every rerun. Nothing is downloaded: the docs say where each dataset lives.
"""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Callable

from PIL import Image
from torch.utils.data import Dataset

from tensorar.errors import InputError

CAPTIONS_FILE = "captions.jsonl"
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
CAPTION_KEYS = ("caption", "text", "prompt")
BLIP3O_HINT = ("BLIP3o's text-image sets are webdataset tar shards on huggingface.co/datasets/BLIP3o "
               "(BLIP3o-60k, BLIP3o-Pretrain-Long-Caption, ...): download them and point the config at them")


class CaptionedImages(Dataset):
    """Item i -> (transform(RGB image), i); `captions[i]` its caption. Order: file order (JSONL) or
    shard order then member order (tar)."""

    def __init__(self, source: str | Path, transform: Callable | None = None):
        self.source = str(source)
        self.transform = transform
        if _is_jsonl(source):
            self._items, self.captions = _jsonl_index(Path(source))
        else:
            self._items, self.captions = _tar_index(_tar_paths(source))
        if not self._items:
            raise InputError(f"{source} holds no captioned images")

    def __len__(self) -> int:
        return len(self._items)

    def image(self, i: int) -> Image.Image:
        where = self._items[i]
        if isinstance(where, Path):
            return Image.open(where).convert("RGB")
        path, offset, size = where
        with open(path, "rb") as f:
            f.seek(offset)
            return Image.open(io.BytesIO(f.read(size))).convert("RGB")

    def __getitem__(self, i: int):
        image = self.image(i)
        return (self.transform(image) if self.transform else image), i


def is_captioned(source: str | Path) -> bool:
    """Whether `source` is a captioned dataset (JSONL or tar shards) rather than an ImageFolder."""
    return _is_jsonl(source) or "{" in str(source) or str(source).endswith(".tar") or \
        (Path(source).is_dir() and any(Path(source).glob("*.tar")))


def _is_jsonl(source) -> bool:
    path = Path(source)
    return path.suffix == ".jsonl" or (path.is_dir() and (path / CAPTIONS_FILE).is_file())


def _jsonl_index(source: Path) -> tuple[list[Path], list[str]]:
    path = source if source.suffix == ".jsonl" else source / CAPTIONS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"captions file not found: {path} (one {{\"image\": ..., \"caption\": ...}} per line)")
    items, captions = [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            image, caption = path.parent / record["image"], record["caption"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise InputError(f"{path}:{n}: expected {{\"image\": PATH, \"caption\": TEXT}} ({err})") from None
        if not image.is_file():
            raise FileNotFoundError(f"{path}:{n}: image {image} not found")
        items.append(image)
        captions.append(str(caption))
    return items, captions


def _tar_paths(source) -> list[Path]:
    text = str(source)
    if "{" in text:
        from braceexpand import braceexpand  # a webdataset dependency

        paths = [Path(p) for p in braceexpand(text)]
    elif Path(text).is_dir():
        paths = sorted(Path(text).glob("*.tar"))
    else:
        paths = [Path(text)]
    missing = [p for p in paths if not p.is_file()]
    if missing or not paths:
        raise FileNotFoundError(f"tar shard(s) not found: {', '.join(map(str, missing[:3])) or text} "
                                f"({len(missing)} missing). {BLIP3O_HINT}")
    return paths


def _tar_index(paths: list[Path]) -> tuple[list[tuple[Path, int, int]], list[str]]:
    """(shard, data offset, size) of every item's image, and its caption, reading tar headers once."""
    from webdataset.tariterators import base_plus_ext

    items, captions = [], []
    for path in paths:
        groups: dict[str, dict] = {}
        with tarfile.open(path) as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = base_plus_ext(member.name)
                if key is None:
                    continue
                group = groups.setdefault(key, {})
                ext = ext.lower()
                if ext in IMAGE_EXTENSIONS:
                    group["image"] = (path, member.offset_data, member.size)
                elif ext in ("txt", "json"):
                    group[ext] = tar.extractfile(member).read().decode("utf-8")
        for key, group in groups.items():  # insertion order: the shard's member order
            caption = group.get("txt")
            if caption is None and "json" in group:
                record = json.loads(group["json"])
                caption = next((record[k] for k in CAPTION_KEYS if k in record), None)
            if "image" in group and caption is not None:
                items.append(group["image"])
                captions.append(caption.strip())
    return items, captions
