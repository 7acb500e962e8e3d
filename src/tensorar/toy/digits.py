"""scikit-learn's bundled digits as an ImageFolder: the embedded toy dataset (`tensorar make_digits`).

`sklearn.datasets.load_digits` ships inside the scikit-learn wheel (1,797 8x8 images of hand-written
digits, integer grey levels 0..16, 10 classes), so the whole toy workflow runs with no download. It is
written in the layout ImageNet uses, so every later stage reads the toy and the real data the same way:

    DIR/train/<class>/<id>.png      DIR/val/<class>/<id>.png      DIR/dataset_card.json      DIR/README.md

Fixed choices (all recorded in the card):
- class folders are the digit itself, `0`..`9`: single characters, so the sorted order ImageFolder uses
  to assign label indices is the digit value;
- `<id>` is the image's index in `load_digits()` zero-padded to 4 digits, so every file traces back to
  its source row;
- grey mapping `uint8 = (v * 255 + 8) // 16` (v in 0..16, round half up): 0 (paper) -> 0 black,
  16 (ink) -> 255 white, like MNIST; R = G = B, saved as RGB PNG because generators and feature
  networks take 3 channels;
- resampling is nearest neighbour by an integer factor (each source pixel becomes an (S/8)x(S/8) block,
  so S must be a multiple of 8). Any smoothing filter would invent grey levels the data never had and
  blur 8-pixel strokes into blobs; nearest keeps the digits crisp and the upscale exactly invertible;
- split: stratified by class. For each class in order 0..9 a `numpy.random.default_rng(seed)`
  permutation of that class's indices; the first round(val_fraction * n_class) go to val.

The split digest (`split_digest`) is sha256 over the sorted relative paths, each followed by its length
and bytes, so it changes iff a file is added, removed, renamed or altered. PNG bytes come from Pillow's
zlib; the card records the Pillow version and a pixel digest that is independent of it.

The build is atomic: everything is written into a hidden temp dir next to DIR, renamed to DIR at the
end; a killed run leaves no DIR (at most a `.DIR.*.tmp` dir), and a DIR without a card is never
mistaken for a dataset. Re-running with the same arguments on a complete, unaltered DIR is a no-op.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from tensorar.distributed import get_logger
from tensorar.fileio import atomic_write_json, atomic_write_text

FORMAT_VERSION = 1
SPLITS = ("train", "val")
NUM_CLASSES = 10
SOURCE_SIZE = 8
GREY_MAX = 16
# Card fields that define the dataset's content. Tool versions are provenance only: upgrading
# scikit-learn must not make an identical existing dataset look different.
_IDENTITY_KEYS = ("format_version", "image_size", "split", "counts", "sha256")


def load_digits_rgb(image_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as uint8 RGB (N, S, S, 3) plus int64 labels (N,), with the card's mapping."""
    from sklearn.datasets import load_digits

    if image_size < SOURCE_SIZE or image_size % SOURCE_SIZE:
        raise ValueError(f"--image-size must be a positive multiple of {SOURCE_SIZE}, got {image_size}")
    digits = load_digits()
    grey = digits.images.astype(np.int64)  # (N, 8, 8), integers 0..16
    grey = ((grey * 255 + GREY_MAX // 2) // GREY_MAX).astype(np.uint8)
    factor = image_size // SOURCE_SIZE
    grey = grey.repeat(factor, axis=1).repeat(factor, axis=2)  # (N, S, S), nearest-neighbour upscale
    rgb = np.repeat(grey[..., None], 3, axis=-1)  # (N, S, S, 3)
    return rgb, digits.target.astype(np.int64)


def split_indices(labels: np.ndarray, val_fraction: float = 0.2, seed: int = 0) -> dict[str, np.ndarray]:
    """Stratified split: per class (in order 0..C-1) a seeded permutation; its head goes to val."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"--val-fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in range(int(labels.max()) + 1):
        members = rng.permutation(np.flatnonzero(labels == c))
        n_val = int(round(val_fraction * len(members)))
        val.append(members[:n_val])
        train.append(members[n_val:])
    return {"train": np.sort(np.concatenate(train)), "val": np.sort(np.concatenate(val))}


def encode_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")  # no metadata, fixed zlib level: deterministic bytes
    return buf.getvalue()


def split_digest(split_dir: str | os.PathLike) -> str:
    """sha256 over the sorted relative paths of every file under `split_dir`, with their bytes."""
    root = Path(split_dir)
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    return digest_files(files)


def digest_files(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for rel in sorted(files):
        data = files[rel]
        h.update(f"{rel}\0{len(data)}\0".encode())  # the length makes path/byte boundaries unambiguous
        h.update(data)
    return h.hexdigest()


def render(image_size: int = 16, val_fraction: float = 0.2, seed: int = 0) -> tuple[dict, dict[str, dict[str, bytes]]]:
    """The dataset in memory: its card and {split: {relative path: PNG bytes}}. Pure and deterministic."""
    import PIL
    import sklearn

    images, labels = load_digits_rgb(image_size)
    splits = split_indices(labels, val_fraction, seed)
    files: dict[str, dict[str, bytes]] = {}
    counts, pixel_digests = {}, {}
    for split, idx in splits.items():
        files[split] = {f"{labels[i]}/{i:04d}.png": encode_png(images[i]) for i in idx}
        per_class = np.bincount(labels[idx], minlength=NUM_CLASSES)
        counts[split] = {"total": int(len(idx)), "per_class": {str(c): int(n) for c, n in enumerate(per_class)}}
        pixel_digests[split] = hashlib.sha256(np.ascontiguousarray(images[idx]).tobytes()).hexdigest()
    card = {
        "name": "tensorar-digits",
        "format_version": FORMAT_VERSION,
        "source": {
            "loader": "sklearn.datasets.load_digits",
            "description": "UCI ML hand-written digits (optical recognition), the 1,797-image copy bundled "
            "with scikit-learn: 8x8, integer grey levels 0..16, 10 classes",
            "url": "https://archive.ics.uci.edu/ml/datasets/Optical+Recognition+of+Handwritten+Digits",
            "num_images": int(len(labels)),
            "scikit_learn_version": sklearn.__version__,
            "pillow_version": PIL.__version__,
        },
        "image_size": image_size,
        "image_mode": "RGB",
        "grey_mapping": "uint8 = (v * 255 + 8) // 16 for source v in 0..16; R = G = B; 0 = black background",
        "resampling": f"nearest, integer factor {image_size // SOURCE_SIZE} (each source pixel -> a "
        f"{image_size // SOURCE_SIZE}x{image_size // SOURCE_SIZE} block)",
        "class_folders": [str(c) for c in range(NUM_CLASSES)],
        "file_name": "<class>/<index in load_digits() zero-padded to 4>.png",
        "split": {
            "rule": "stratified by class: for c in 0..9, numpy.random.default_rng(seed) permutes class c's "
            "indices (one shared generator, classes in order); the first round(val_fraction * n_c) go to val",
            "seed": seed,
            "val_fraction": val_fraction,
        },
        "counts": counts,
        "sha256": {split: digest_files(f) for split, f in files.items()},
        "sha256_rule": "sha256 over sorted relative paths p (within the split dir) of "
        "utf8(p + '\\0' + str(len(bytes)) + '\\0') + bytes",
        "pixels_sha256": pixel_digests,
        "pixels_sha256_rule": "sha256 of the split's decoded uint8 (N, S, S, 3) array, ids ascending "
        "(independent of the PNG encoder)",
    }
    return card, files


def verify(out: str | os.PathLike) -> dict | None:
    """The card of a complete, unaltered dataset at `out`, else None (missing, partial or modified)."""
    out = Path(out)
    card_path = out / "dataset_card.json"
    if not card_path.is_file():
        return None
    card = json.loads(card_path.read_text())
    for split in SPLITS:
        if not (out / split).is_dir() or split_digest(out / split) != card.get("sha256", {}).get(split):
            return None
    return card


def build(out: str | os.PathLike, image_size: int = 16, val_fraction: float = 0.2, seed: int = 0,
          overwrite: bool = False) -> dict:
    """Write the dataset to `out` atomically and return its card (a no-op when it is already there)."""
    out = Path(out)
    log = get_logger("make_digits")
    card, files = render(image_size, val_fraction, seed)
    existing = verify(out)
    if existing is not None and all(existing.get(k) == card[k] for k in _IDENTITY_KEYS):
        log.info(f"{out} already holds this dataset (same card, checksums verified): nothing to do")
        return existing
    # An empty DIR is fine to replace: Snakemake creates an output's parent directory before the job.
    if out.exists() and any(out.iterdir()) and not overwrite:
        what = "a different digits dataset" if existing is not None else "something that is not a complete dataset"
        raise FileExistsError(f"{out} already holds {what}; pass --overwrite to replace it")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = fresh_dir(out, ".tmp")
    try:
        # PNGs are not fsynced one by one: the dir rename is the commit point, and `verify` re-hashes
        # every file, so bytes lost to a power cut would show as an incomplete dataset.
        for split, split_files in files.items():
            for rel, data in split_files.items():
                path = tmp / split / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        atomic_write_text(tmp / "README.md", readme(card))
        atomic_write_json(tmp / "dataset_card.json", card)  # last: its presence marks a finished build
        replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log.info(f"wrote {out}: " + ", ".join(f"{s} {card['counts'][s]['total']} images sha256 {card['sha256'][s][:12]}"
                                        for s in SPLITS))
    return card


def fresh_dir(next_to: Path, suffix: str) -> Path:
    """A new hidden dir beside `next_to` (mkdir, not mkdtemp, so it gets the umask's permissions)."""
    path = next_to.parent / f".{next_to.name}.{uuid.uuid4().hex[:8]}{suffix}"
    path.mkdir()
    return path


def replace_dir(src: Path, dst: Path) -> None:
    """Rename `src` to `dst`; an existing `dst` is moved aside first and deleted after the swap."""
    if not dst.exists() or not any(dst.iterdir()):
        os.replace(src, dst)  # atomic; replaces an empty directory
        return
    old = fresh_dir(dst, ".old")
    os.replace(dst, old / dst.name)
    os.replace(src, dst)
    shutil.rmtree(old)


def readme(card: dict) -> str:
    counts = card["counts"]
    rows = "\n".join(
        f"| {c} | {counts['train']['per_class'][c]} | {counts['val']['per_class'][c]} |" for c in card["class_folders"]
    )
    return f"""# tensorar-digits (toy dataset)

{card['source']['description']}.

- Source: `{card['source']['loader']}` (scikit-learn {card['source']['scikit_learn_version']}), originally
  {card['source']['url']}
- Written by `python -m tensorar make_digits`; every number here is also in `dataset_card.json`.

- Layout: ImageFolder, `train/<class>/<id>.png`, `val/<class>/<id>.png`; class folders `0`..`9` (the digit);
  `<id>` = the image's index in `load_digits()`.
- Images: {card['image_size']}x{card['image_size']} {card['image_mode']} PNG. Grey mapping: {card['grey_mapping']}.
- Resampling: {card['resampling']}; nearest keeps the strokes crisp and adds no grey levels.
- Split: {card['split']['rule']}; seed {card['split']['seed']}, val_fraction {card['split']['val_fraction']}.
- Checksums: {card['sha256_rule']}.
  - train: `{card['sha256']['train']}`
  - val: `{card['sha256']['val']}`

| class | train | val |
|---|---|---|
{rows}
| total | {counts['train']['total']} | {counts['val']['total']} |

This is a toy stand-in for ImageNet so the workflow runs end to end on a laptop. Metrics computed on it
are not comparable with the paper's.
"""
