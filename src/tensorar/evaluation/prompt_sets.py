"""A benchmark's prompt set and the folder of images generated for it: read the prompts once, and check a
folder holds exactly the images of that set before anything scores it (ours: the official evaluators
score whatever files they find, so a folder with 200 of 440 GenEval images, or an extra prompt folder,
would be scored as if complete).

Layouts (tensorar sample_prompts writes them, tensorar score_benchmark reads them):
- "geneval": `<index:05d>/metadata.jsonl` (the prompt's line of GenEval's metadata file) and
  `<index:05d>/samples/<j:04d>.png`, n images of size S x S per prompt;
- "dpg": `<item_id>.png`, one 2x2 grid of 4 images, 2S x 2S, per prompt of DPG-Bench's prompt folder.

`prompts.json` (SET_MANIFEST), written by sample_prompts once every prompt has its images, records the
prompt set (keys and metadata), n and S: a folder can then be checked without the prompt file, and a
prompt file given again is compared with it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from tensorar.errors import InputError
from tensorar.evaluation import dpg, geneval
from tensorar.fileio import atomic_write_json, identity_hash, image_errors, read_json

LAYOUTS = ("geneval", "dpg")
SET_MANIFEST = "prompts.json"
BOOKKEEPING = ("identity.json", SET_MANIFEST)  # files of sample_prompts beside the images, never scored
Prompt = tuple[str, str, dict]  # (key, prompt text, metadata)


def read_prompts(source: str | Path, layout: str) -> list[Prompt]:
    """(key, prompt, metadata) per prompt, in a fixed order: GenEval's line index, DPG's item id. An empty
    prompt file is an error (geneval.load_metadata / dpg.load_prompts)."""
    if layout == "geneval":
        return [(f"{i:05d}", meta["prompt"], meta) for i, meta in enumerate(geneval.load_metadata(source))]
    return [(item, prompt, {}) for item, prompt in dpg.load_prompts(source).items()]


def write_set_manifest(folder: Path, layout: str, prompts: list[Prompt], n: int, image_size: int) -> None:
    atomic_write_json(folder / SET_MANIFEST, {"layout": layout, "prompts": [list(p) for p in prompts],
                                              "prompts_sha256": identity_hash(prompts), "images_per_prompt": n,
                                              "image_size": image_size})


def expected_set(folder: Path, layout: str, prompts_file: str | Path | None, n: int | None = None) -> dict[str, Any]:
    """The set a folder must hold: the prompt file's (compared with the folder's manifest when both exist),
    or the manifest's alone. Neither: an error (nothing to check the folder against). `n`: images per
    prompt (default: the manifest's, else the benchmarks' 4)."""
    manifest_path = folder / SET_MANIFEST
    manifest = read_json(manifest_path) if manifest_path.is_file() else None
    if manifest is not None and manifest.get("layout") != layout:
        raise InputError(f"{manifest_path}: a {manifest.get('layout')} folder, not {layout}")
    if prompts_file is None:
        if manifest is None:
            raise InputError(f"{folder} has no {SET_MANIFEST} (written by tensorar sample_prompts when every prompt "
                             "has its images): give the prompt file (--prompts) to check the folder against")
        if n is not None and n != manifest["images_per_prompt"]:
            raise InputError(f"{manifest_path}: {manifest['images_per_prompt']} images per prompt, not {n}")
        return {**manifest, "prompts": [tuple(p) for p in manifest["prompts"]]}
    prompts = read_prompts(prompts_file, layout)
    if manifest is not None and manifest["prompts_sha256"] != identity_hash(prompts):
        raise InputError(f"{folder} was generated for another prompt set than {prompts_file} ({manifest_path})")
    n = n or (manifest["images_per_prompt"] if manifest else 4)  # GenEval and DPG-Bench: 4 images per prompt
    size = manifest["image_size"] if manifest else None
    return {"layout": layout, "prompts": prompts, "prompts_sha256": identity_hash(prompts),
            "images_per_prompt": n, "image_size": size}


def check_folder(folder: str | Path, expected: dict[str, Any]) -> dict[str, Any]:
    """Exactly the expected images, no more, each of the expected size; returns what the folder covers."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    layout, prompts, n = expected["layout"], expected["prompts"], expected["images_per_prompt"]
    if layout == "dpg" and n != 4:
        raise InputError(f"{folder}: DPG-Bench grids hold 4 images, the set says {n}")
    entries = {p.name for p in folder.iterdir() if not p.name.startswith(".") and p.name not in BOOKKEEPING}
    wanted = {key if layout == "geneval" else f"{key}.png": (key, meta) for key, _, meta in prompts}
    _same_names(folder, entries, set(wanted), "prompt folders" if layout == "geneval" else "grids")
    size = expected["image_size"]
    sizes = set()
    for name, (key, meta) in sorted(wanted.items()):
        if layout == "geneval":
            prompt_dir = folder / name
            recorded = read_json(prompt_dir / "metadata.jsonl") if (prompt_dir / "metadata.jsonl").is_file() else None
            if recorded != meta:
                raise InputError(f"{prompt_dir / 'metadata.jsonl'}: {'missing' if recorded is None else 'another prompt'}"
                                 f" (expected line {int(key) + 1} of the prompt file)")
            samples = prompt_dir / "samples"
            found = {p.name for p in samples.iterdir() if not p.name.startswith(".")} if samples.is_dir() else set()
            _same_names(samples, found, {f"{j:04d}.png" for j in range(n)}, "images")
            sizes |= {_image_size(samples / f"{j:04d}.png") for j in range(n)}
        else:
            w, h = _image_size(folder / name)
            if w != h or w % 2:
                raise InputError(f"{folder / name}: a {w}x{h} image is not a 2x2 grid of square images")
            sizes.add((w // 2, h // 2))
    if len(sizes) != 1:
        raise InputError(f"{folder}: images of {len(sizes)} different sizes ({sorted(sizes)[:4]}): not one run's set")
    (side, _), = sizes
    if size is not None and side != size:
        raise InputError(f"{folder}: images are {side}x{side}, the set was generated at {size}x{size}")
    return {"layout": layout, "prompts": len(prompts), "images_per_prompt": n, "images": len(prompts) * n,
            "image_size": side, "prompts_sha256": expected["prompts_sha256"]}


def expected_files(expected: dict[str, Any]) -> set[str]:
    """The file names (relative to the folder) a benchmark's raw outputs must cover: GenEval's images,
    DPG-Bench's item ids."""
    if expected["layout"] == "geneval":
        return {f"{key}/samples/{j:04d}.png" for key, _, _ in expected["prompts"]
                for j in range(expected["images_per_prompt"])}
    return {key for key, _, _ in expected["prompts"]}


def check_covered(what: str, found: set[str], expected: set[str], source: Path) -> None:
    """A raw outputs file (detections / answers) covers exactly the set's images."""
    _same_names(source, found, expected, what)


def _same_names(where: Path, found: set[str], wanted: set[str], what: str) -> None:
    missing, extra = sorted(wanted - found), sorted(found - wanted)
    if missing or extra:
        parts = [f"{where}: not the prompt set's {what}:"]
        if missing:
            parts.append(f"{len(missing)} of {len(wanted)} missing ({', '.join(missing[:5])}{' ...' * (len(missing) > 5)})")
        if extra:
            parts.append(f"{len(extra)} not in the set ({', '.join(extra[:5])}{' ...' * (len(extra) > 5)})")
        raise InputError(" ".join(parts) + "; an incomplete or mixed set is never scored: rerun sample_prompts "
                         "(it resumes) or remove what does not belong")


def _image_size(path: Path) -> tuple[int, int]:
    with image_errors(path), Image.open(path) as im:  # the header only
        return im.size
