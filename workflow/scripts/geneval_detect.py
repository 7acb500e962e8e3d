"""GenEval's detector stack over a folder of generated images -> the raw detections file our scorer reads.

Runs in its own environment (workflow/envs/geneval.yaml: Python 3.9, torch 1.12, mmcv-full 1.7, mmdet 2.x),
where `tensorar` is not installed, so it imports nothing from it. `tensorar.evaluation.geneval` applies the
rules to what this writes (`score_raw_detections`); this script only runs the models.

Mirrors how djghosh13/geneval @ af4902f, evaluation/evaluate_images.py, calls its models:
  load_models           Mask2Former via mmdet 2.x `init_detector(config, checkpoint, device)`; CLIP
                        ViT-L-14 "openai" via open_clip (fp32 weights, the eval transform, its tokenizer).
  evaluate_image        `inference_detector(model, <image path>)`; a tuple result is (bbox, segm), bbox[c] an
                        (N, 5) float32 array x1, y1, x2, y2, score for class index c, segm[c][i] box i's
                        (H, W) bool mask; class c is named by the c-th line of object_names.txt, i.e. COCO
                        in the detector's order, with GenEval's names for three classes (`GENEVAL_NAMES`).
  ImageCrops            the EXIF-transposed image, composited with the box's mask over "#999" and
                        cropped to box[:4] by PIL, then the CLIP eval transform.
  color_classification  clip_benchmark's `zero_shot_classifier` over COLORS with GenEval's three
                        templates (cached per class) and `run_classification`, batches of 16; a crop's
                        colour is the argmax.
The colour rule looks only at the top-`count` kept boxes of a class that has a colour requirement, so those
are the boxes classified, together in one batch as upstream does; kept = score > threshold (strict, float32),
best first (a stable sort reversed, as our scorer ranks), at most MAX_OBJECTS. Every other box gets `null`.

Trusted code: mmdet's `init_detector` and open_clip's `load_openai_model` read their weights with full
unpickling (torch 1.12 `torch.load`, which can execute code in the file). Use only the files named in
workflow/envs/README.md, from their official sources. The CLIP file's sha256 is checked: a mismatch stops the
run unless `--allow-clip-checksum-mismatch` is given (other weights give other colours, so other scores).

Differences from upstream, none of which changes a detection or a colour:
- the DataLoader runs in the main process (upstream: num_workers=4);
- the CLIP weights are read from a given file (`open_clip.load_openai_model(path)` + `image_transform`, the
  steps `create_model_and_transforms("ViT-L-14", pretrained="openai")` runs) instead of open_clip's cache;
- `--device cpu` is allowed (upstream asserts CUDA); on CPU the CLIP autocast is off, so near-tied colours
  can differ from a GPU run.

Output: JSON Lines, one object per image in sorted folder order (format: tensorar/evaluation/geneval.py):
    {"filename": "00012/samples/0003.png", "metadata": {...},
     "detections": {"dog": {"boxes": [[x1, y1, x2, y2], ...], "scores": [...], "colors": ["brown", null]}}}
Classes in the detector's order; classes without a detection are left out; scores are not thresholded.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# The `--options` defaults of evaluate_images.py (= tensorar.evaluation.geneval.GenEvalRules; a test checks).
THRESHOLD = 0.3
COUNTING_THRESHOLD = 0.9  # tag "counting"
MAX_OBJECTS = 16
BGCOLOR = "#999"
COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
COLOR_BATCH = 16
CLIP_ARCH = "ViT-L-14"
# GenEval's object_names.txt is mmdet's COCO class list with these three names changed.
GENEVAL_NAMES = {"mouse": "computer mouse", "remote": "tv remote", "keyboard": "computer keyboard"}

CHECKPOINT_URL = ("https://download.openmmlab.com/mmdetection/v2.0/mask2former/"
                  "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco/"
                  "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco_20220504_001756-743b7d99.pth")
CONFIG_NAME = "mask2former/mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.py"
CLIP_SHA256 = "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836"
CLIP_URL = f"https://openaipublic.azureedge.net/clip/models/{CLIP_SHA256}/ViT-L-14.pt"
_SAMPLE_NAME = re.compile(r"\d+\.png")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", required=True, type=Path, help="GenEval sample folder (<index:05d>/samples/NNNN.png)")
    p.add_argument("--out", required=True, type=Path, help="raw detections file to write (JSON Lines)")
    p.add_argument("--detector-config", type=Path, default=None,
                   help=f"mmdet 2.x config; default: {CONFIG_NAME} shipped inside the installed mmdet")
    p.add_argument("--detector-checkpoint", required=True, type=Path, help="Mask2Former Swin-S COCO .pth")
    p.add_argument("--clip-weights", required=True, type=Path, help="OpenAI CLIP ViT-L/14 file (ViT-L-14.pt)")
    p.add_argument("--device", default="cuda", help="torch device (default: cuda, as upstream)")
    p.add_argument("--allow-clip-checksum-mismatch", action="store_true",
                   help="run with CLIP weights other than OpenAI's ViT-L-14.pt (a warning instead of an error; the "
                        "colour scores are then not GenEval's)")
    return p.parse_args(argv)


def require_file(path: Path, what: str, where: str) -> None:
    if not path.is_file():
        sys.exit(f"geneval_detect: {what} not found: {path}\n  get it from {where}")


def default_config() -> Path:
    """The config inside mmdet: .mim/configs in a pip wheel, ../configs in a source checkout (upstream)."""
    import mmdet
    root = Path(mmdet.__file__).parent
    for path in (root / ".mim" / "configs" / CONFIG_NAME, root.parent / "configs" / CONFIG_NAME):
        if path.is_file():
            return path
    sys.exit(f"geneval_detect: no --detector-config given and {CONFIG_NAME} is not inside mmdet ({root}); "
             f"pass the config from mmdetection 2.x (configs/{CONFIG_NAME})")


def list_samples(root: Path) -> list[tuple[str, Path, dict]]:
    """(filename relative to root, path, metadata) per image, as tensorar.evaluation.geneval.list_samples."""
    if not root.is_dir():
        sys.exit(f"geneval_detect: image folder not found: {root}")
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit()):
        meta_path = folder / "metadata.jsonl"
        if not meta_path.is_file():
            sys.exit(f"geneval_detect: prompt folder without metadata: {meta_path}")
        metadata = json.loads(meta_path.read_text())
        samples = folder / "samples"
        for name in sorted(p.name for p in samples.iterdir()) if samples.is_dir() else []:
            if _SAMPLE_NAME.fullmatch(name) and (samples / name).is_file():
                out.append((f"{folder.name}/samples/{name}", samples / name, metadata))
    return out


def geneval_classnames(detector_classes) -> list[str]:
    return [GENEVAL_NAMES.get(name, name) for name in detector_classes]


def check_classes(samples, classnames) -> None:
    """Every class a prompt names must be one the detector reports, or it could never be found."""
    asked = {req["class"] for _, _, meta in samples for req in meta.get("include", []) + meta.get("exclude", [])}
    if unknown := sorted(asked - set(classnames)):
        sys.exit(f"geneval_detect: prompts name classes the detector does not have: {unknown}")


def top_boxes(scores: np.ndarray, threshold: float, limit: int) -> np.ndarray:
    """Indices of the kept boxes, best first: score > threshold (float32), at most `limit`."""
    order = np.argsort(scores, kind="stable")[::-1]
    return order[scores[order] > np.float32(threshold)][:limit]


class MaskedCrops:
    """A torch Dataset of (transformed crop, 0): the ImageCrops of evaluate_images.py."""

    def __init__(self, image: Image.Image, objects, transform):
        self._image = image.convert("RGB")
        self._blank = Image.new("RGB", image.size, color=BGCOLOR)
        self._objects = objects  # [(row (5,) float32, mask (H, W) bool or None)]
        self._transform = transform

    def __len__(self):
        return len(self._objects)

    def __getitem__(self, index):
        box, mask = self._objects[index]
        image = self._image
        if mask is not None:
            if tuple(mask.shape) != self._image.size[::-1]:
                raise ValueError(f"mask shape {mask.shape} differs from image size {self._image.size[::-1]}")
            image = Image.composite(self._image, self._blank, Image.fromarray(mask))
        # Upstream hands PIL the float32 row itself; newer Pillow wants a tuple. Same corners: PIL rounds
        # each one half-to-even either way, and float32 -> float is exact.
        return self._transform(image.crop(tuple(float(v) for v in box[:4]))), 0


class ColorClassifier:
    """CLIP zero-shot colour of masked crops (color_classification of evaluate_images.py)."""

    def __init__(self, weights: Path, device: str):
        import open_clip
        from clip_benchmark.metrics import zeroshot_classification as zsc
        zsc.tqdm = lambda it, *args, **kwargs: it  # silence per-batch progress bars, as upstream
        self._zsc, self._device = zsc, device
        # = open_clip.create_model_and_transforms(CLIP_ARCH, pretrained="openai", device=device), from a file
        self.model = open_clip.load_openai_model(str(weights), precision="fp32", device=device)
        self.transform = open_clip.image_transform(self.model.visual.image_size, is_train=False,
                                                   mean=self.model.visual.image_mean,
                                                   std=self.model.visual.image_std)
        self.tokenizer = open_clip.get_tokenizer(CLIP_ARCH)
        self._classifiers = {}

    def classify(self, image: Image.Image, objects, classname: str) -> list[str]:
        import torch
        if classname not in self._classifiers:
            templates = ["a photo of a {c} " + classname, "a photo of a {c}-colored " + classname,
                         "a photo of a {c} object"]
            self._classifiers[classname] = self._zsc.zero_shot_classifier(
                self.model, self.tokenizer, list(COLORS), templates, self._device)
        loader = torch.utils.data.DataLoader(MaskedCrops(image, objects, self.transform),
                                             batch_size=COLOR_BATCH, num_workers=0)
        with torch.no_grad():
            logits, _ = self._zsc.run_classification(self.model, self._classifiers[classname], loader, self._device)
        return [COLORS[i] for i in logits.argmax(1).tolist()]


def split_result(result, n_classes: int):
    """mmdet's result -> (bbox per class, mask list per class or None), as evaluate_image splits it."""
    bbox = result[0] if isinstance(result, tuple) else result
    segm = result[1] if isinstance(result, tuple) and len(result) > 1 else None
    if len(bbox) != n_classes:
        raise ValueError(f"detector returned {len(bbox)} classes, its CLASSES has {n_classes}")
    return bbox, segm


def detect_image(detector, colorer: ColorClassifier, path: Path, metadata: dict, classnames) -> dict:
    from mmdet.apis import inference_detector
    bbox, segm = split_result(inference_detector(detector, str(path)), len(classnames))
    image = None  # read only when a colour is needed
    rows = {name: np.asarray(bbox[c], dtype=np.float32).reshape(-1, 5)  # (N, 5) x1, y1, x2, y2, score
            for c, name in enumerate(classnames) if len(bbox[c])}
    colors = {name: [None] * len(r) for name, r in rows.items()}
    threshold = COUNTING_THRESHOLD if metadata["tag"] == "counting" else THRESHOLD
    for req in metadata.get("include", []):  # in prompt order, as upstream's evaluate() classifies
        name, count = req["class"], int(req["count"])
        top = top_boxes(rows[name][:, 4], threshold, MAX_OBJECTS)[:count].tolist() if name in rows else []
        if "color" not in req or len(top) < count:  # too few boxes fails before the colour check
            continue
        if image is None:
            with Image.open(path) as im:  # upstream: ImageOps.exif_transpose(Image.open(path)); RGB in ImageCrops
                image = ImageOps.exif_transpose(im).convert("RGB")
        c = classnames.index(name)
        objects = [(rows[name][i], None if segm is None else np.asarray(segm[c][i])) for i in top]
        for i, color in zip(top, colorer.classify(image, objects, name)):
            colors[name][i] = color
    return {name: {"boxes": r[:, :4].tolist(), "scores": r[:, 4].tolist(), "colors": colors[name]}
            for name, r in rows.items()}


def check_clip_weights(path: Path, allow_mismatch: bool) -> None:
    """The CLIP file is OpenAI's ViT-L-14.pt (it is unpickled fully, and other weights change the colours)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    if digest.hexdigest() != CLIP_SHA256:
        message = (f"{path} is not OpenAI's ViT-L-14.pt (sha256 {digest.hexdigest()}, expected {CLIP_SHA256}; "
                   f"get it from {CLIP_URL})")
        if not allow_mismatch:
            sys.exit(f"geneval_detect: error: {message}. The file is unpickled fully (it can run code) and other "
                     "weights give other scores; pass --allow-clip-checksum-mismatch only for a file you trust.")
        print(f"geneval_detect: warning: {message} (allowed by --allow-clip-checksum-mismatch)", file=sys.stderr)


def main(argv=None) -> None:
    args = parse_args(argv)
    require_file(args.detector_checkpoint, "Mask2Former Swin-S checkpoint", CHECKPOINT_URL)
    require_file(args.clip_weights, "CLIP ViT-L/14 weights",
                 f"{CLIP_URL} (the file open_clip's pretrained='openai' downloads to ~/.cache/clip)")
    check_clip_weights(args.clip_weights, args.allow_clip_checksum_mismatch)  # before any model is loaded
    samples = list_samples(args.images)
    import torch
    from mmdet.apis import init_detector
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(f"geneval_detect: --device {args.device} but CUDA is not available (pass --device cpu)")
    config = args.detector_config or default_config()
    require_file(config, "mmdet config", f"mmdetection 2.x, configs/{CONFIG_NAME}")

    detector = init_detector(str(config), str(args.detector_checkpoint), device=args.device)
    classnames = geneval_classnames(detector.CLASSES)
    check_classes(samples, classnames)
    colorer = ColorClassifier(args.clip_weights, args.device)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    start = time.time()
    with open(tmp, "w") as f:  # renamed when whole, so a killed run leaves no complete-looking file
        for n, (filename, path, metadata) in enumerate(samples, 1):
            detections = detect_image(detector, colorer, path, metadata, classnames)
            f.write(json.dumps({"filename": filename, "metadata": metadata, "detections": detections}) + "\n")
            if n % 100 == 0 or n == len(samples):
                print(f"geneval_detect: {n}/{len(samples)} images, {time.time() - start:.0f}s", file=sys.stderr)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
