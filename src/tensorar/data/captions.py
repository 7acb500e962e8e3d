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
Nothing is lost silently (ours): a truncated shard, a key without an image or a caption, a duplicate
key are errors unless `CaptionReading` allows dropping them; what is dropped or changed is counted,
logged and kept in `CaptionedImages.report`; a caption that is not a string is an error naming the file
and line (JSONL) or shard and member (tar).
"""
from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image
from torch.utils.data import Dataset

from tensorar.distributed import get_logger
from tensorar.errors import InputError
from tensorar.fileio import image_errors, read_jsonl
from tensorar.options import option

CAPTIONS_FILE = "captions.jsonl"
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
CAPTION_KEYS = ("caption", "text", "prompt")
BLIP3O_HINT = ("BLIP3o's text-image sets are webdataset tar shards on huggingface.co/datasets/BLIP3o "
               "(BLIP3o-60k, BLIP3o-Pretrain-Long-Caption, ...): download them and point the config at them")


@dataclass(frozen=True)
class CaptionReading:
    """What a reader of captioned data may drop (ours; by default nothing: a set that loses items is an
    error, never a silent loss). Whatever is dropped is counted and logged, and kept in `report`."""

    keep_partial_shards: bool = option(False, "keep the items before the cut of a truncated tar shard "
                                              "(default: a truncated shard is an error)")
    skip_bad_items: bool = option(False, "skip keys without an image or a caption, and keep the first of "
                                         "duplicate keys (default: an error)")


class CaptionedImages(Dataset):
    """Item i -> (transform(RGB image), i); `captions[i]` its caption. Order: file order (JSONL) or
    shard order then member order (tar). `report`: what the reader dropped or changed, by reason."""

    def __init__(self, source: str | Path, transform: Callable | None = None,
                 reading: CaptionReading = CaptionReading()):
        self.source = str(source)
        self.transform = transform
        self.report = Report(reading)
        if _is_jsonl(source):
            self._items, self.captions = _jsonl_index(Path(source), self.report)
        else:
            self._items, self.captions = _tar_index(_tar_paths(source), self.report)
        self.report.log(get_logger("captions"), self.source, len(self._items))
        if not self._items:
            raise InputError(f"{source} holds no captioned images")

    def __len__(self) -> int:
        return len(self._items)

    def image(self, i: int) -> Image.Image:
        where = self._items[i]
        if isinstance(where, Path):
            with image_errors(where), Image.open(where) as im:
                return im.convert("RGB")
        path, offset, size, member = where
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(size)
        with image_errors(f"{path}:{member}"), Image.open(io.BytesIO(data)) as im:
            return im.convert("RGB")

    def __getitem__(self, i: int):
        image = self.image(i)
        return (self.transform(image) if self.transform else image), i


class Report:
    """Counts of dropped / changed items by reason, with a few examples each; errors unless allowed."""

    def __init__(self, reading: CaptionReading):
        self.reading = reading
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}

    def add(self, reason: str, where: str, allowed: bool = True, hint: str = "") -> None:
        if not allowed:
            raise InputError(f"{where}: {reason}{hint}")
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 3:
            self.examples[reason].append(where)

    def log(self, log, source: str, kept: int) -> None:
        for reason, n in self.counts.items():
            log.warning(f"{source}: {n} items {reason} (e.g. {', '.join(self.examples[reason])})")
        if self.counts:
            log.warning(f"{source}: {kept} items kept")

    def as_dict(self) -> dict[str, int]:
        return dict(self.counts)


def is_captioned(source: str | Path) -> bool:
    """Whether `source` is a captioned dataset (JSONL or tar shards) rather than an ImageFolder."""
    return _is_jsonl(source) or "{" in str(source) or str(source).endswith(".tar") or \
        (Path(source).is_dir() and any(Path(source).glob("*.tar")))


def _is_jsonl(source) -> bool:
    path = Path(source)
    return path.suffix == ".jsonl" or (path.is_dir() and (path / CAPTIONS_FILE).is_file())


SKIP_HINT = " (pass --skip-bad-items to skip such items, counted in the log)"


def _jsonl_index(source: Path, report: Report) -> tuple[list[Path], list[str]]:
    path = source if source.suffix == ".jsonl" else source / CAPTIONS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"captions file not found: {path} (one {{\"image\": ..., \"caption\": ...}} per line)")
    items, captions, seen = [], [], set()
    skip = report.reading.skip_bad_items
    for n, record in read_jsonl(path):
        where = f"{path}:{n}"
        if not isinstance(record, dict) or not isinstance(record.get("image"), str):
            raise InputError(f"{where}: expected {{\"image\": PATH, \"caption\": TEXT}}")
        if "caption" not in record:
            report.add("without a caption (dropped)", where, skip, SKIP_HINT)
            continue
        caption = record["caption"]
        if not isinstance(caption, str):
            raise InputError(f"{where}: the caption must be a string, got {caption!r}")
        image = path.parent / record["image"]
        if not image.is_file():
            raise FileNotFoundError(f"{where}: image {image} not found")
        if image in seen:
            report.add("with a duplicate image (dropped)", where, skip, SKIP_HINT)
            continue
        seen.add(image)
        items.append(image)
        captions.append(caption)
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


def _tar_index(paths: list[Path], report: Report) -> tuple[list[tuple[Path, int, int, str]], list[str]]:
    """(shard, data offset, size, member) of every item's image, and its caption, reading tar headers once."""
    from webdataset.tariterators import base_plus_ext

    items, captions, first_shard = [], [], {}
    skip = report.reading.skip_bad_items
    for path in paths:
        groups: dict[str, dict] = {}
        with tarfile.open(path) as tar:
            members = _members(tar, path, report)
            for member in members:
                key, ext = base_plus_ext(member.name)
                where = f"{path}:{member.name}"
                if key is None:
                    report.add("not named key.extension (ignored)", where)
                    continue
                group = groups.setdefault(key, {})
                ext = ext.lower()
                kind = "image" if ext in IMAGE_EXTENSIONS else ext if ext in ("txt", "json") else None
                if kind is None:
                    report.add("of another type than image / .txt / .json (ignored)", where)
                    continue
                if kind in group:
                    report.add(f"a duplicate {kind} of key {key!r} (dropped)", where, skip, SKIP_HINT)
                    continue
                group[kind] = (path, member.offset_data, member.size, member.name) if kind == "image" else \
                    _member_text(tar, member, where)
        for key, group in groups.items():  # insertion order: the shard's member order
            where = f"{path}:{key}"
            caption = _caption(group, where)
            if "image" not in group or caption is None:
                missing = "an image" if "image" not in group else "a caption"
                report.add(f"without {missing} (dropped)", where, skip, SKIP_HINT)
                continue
            if key in first_shard:
                report.add(f"a key already in {first_shard[key]} (dropped)", where, skip, SKIP_HINT)
                continue
            first_shard[key] = path
            stripped = caption.strip()
            if stripped != caption:
                report.add("captions stripped of surrounding whitespace (kept)", where)
            items.append(group["image"])
            captions.append(stripped)
    return items, captions


def _members(tar: tarfile.TarFile, path: Path, report: Report) -> list[tarfile.TarInfo]:
    """A shard's file members. tarfile stops silently at a cut between members and fails inside one: a
    truncated shard (also: no end-of-archive blocks after the last member) is an error unless partial
    shards are kept, then the members before the cut are kept and what is dropped is counted."""
    headers, cut = [], False
    try:
        while (member := tar.next()) is not None:
            headers.append(member)
    except (tarfile.ReadError, EOFError):
        cut = True
    size = path.stat().st_size
    end = max((m.offset_data + -(-m.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE for m in headers), default=0)
    with open(path, "rb") as f:
        f.seek(end)
        trailer = f.read(2 * tarfile.BLOCKSIZE)
    members = [m for m in headers if m.isfile()]
    if not cut and end <= size and trailer == bytes(2 * tarfile.BLOCKSIZE):
        return members
    if not report.reading.keep_partial_shards:
        raise InputError(f"{path} is truncated ({size:,} bytes, cut after {len(headers)} members): download or copy "
                         "it again, or pass --keep-partial-shards to keep the items before the cut")
    from webdataset.tariterators import base_plus_ext

    whole = [m for m in members if m.offset_data + m.size <= size]
    # The key at the cut may have lost members (even when the cut falls between two): dropped whole.
    cut_keys = {base_plus_ext(m.name)[0] for m in members[len(whole) - 1 if whole else 0:]}
    for m in members:
        if base_plus_ext(m.name)[0] in cut_keys:
            report.add("members of the key at the cut of a truncated shard (dropped)", f"{path}:{m.name}")
    report.add("truncated shards (their items before the cut kept)", str(path))
    return [m for m in whole if base_plus_ext(m.name)[0] not in cut_keys]


def _member_text(tar: tarfile.TarFile, member: tarfile.TarInfo, where: str) -> str:
    try:
        return tar.extractfile(member).read().decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{where}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    except (tarfile.ReadError, EOFError, OSError) as err:
        raise InputError(f"{where}: cannot be read ({err}); the shard may be truncated") from None


def _caption(group: dict, where: str) -> str | None:
    """A key's caption: its .txt, else the first of CAPTION_KEYS in its .json; a non-string is an error."""
    if "txt" in group:
        return group["txt"]
    if "json" not in group:
        return None
    try:
        record = json.loads(group["json"])
    except json.JSONDecodeError as err:
        raise InputError(f"{where}.json: not valid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(record, dict):
        raise InputError(f"{where}.json: expected an object with one of {CAPTION_KEYS}")
    key = next((k for k in CAPTION_KEYS if k in record), None)
    if key is None:
        return None
    if not isinstance(record[key], str):
        raise InputError(f"{where}.json: {key!r} must be a string, got {record[key]!r}")
    return record[key]
