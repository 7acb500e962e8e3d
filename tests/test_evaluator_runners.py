"""The benchmark model runners (workflow/scripts/geneval_detect.py, dpg_vqa.py) and their environments.

Each script runs as a subprocess of this interpreter with FAKE model packages first on PYTHONPATH (mmdet,
open_clip, clip_benchmark, modelscope, plus a `tensorar` that refuses to import, since the scripts run where
tensorar is not installed). The fakes answer from the pictures: the fake CLIP names the palette colour most
pixels of a crop have, the fake VQA model the colour of a crop. Our scorers then read what the scripts wrote;
the scores must equal both the hand-worked values and our scorers run in-process on the same fakes.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from tensorar.evaluation import dpg, geneval
from tensorar.evaluation.geneval import ClassDetections

pytest.importorskip("torch")  # the GenEval script batches crops with torch's DataLoader

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = REPO_ROOT / "workflow" / "scripts"
ENVS = REPO_ROOT / "workflow" / "envs"
SHARED = Path(os.environ.get("TENSORAR_SHARED", REPO_ROOT.parent / "shared"))
CONFIG_NAME = "mask2former/mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.py"

# mmdet 2.x CocoDataset.CLASSES, the fake detector's class order.
MMDET_COCO = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush")

# The fake CLIP's rule, shared by the fake package and the in-process classifier below.
PALETTE_SRC = textwrap.dedent('''
    import numpy as np
    PALETTE = {"red": (255, 0, 0), "orange": (255, 165, 0), "yellow": (255, 255, 0), "green": (0, 128, 0),
               "blue": (0, 0, 255), "purple": (128, 0, 128), "pink": (255, 192, 203), "brown": (139, 69, 19),
               "black": (0, 0, 0), "white": (255, 255, 255)}

    def palette_counts(pixels):
        """(H, W, 3) uint8 -> pixel count of each palette colour, in PALETTE order; other pixels ignored."""
        pixels = np.asarray(pixels, dtype=np.uint8).reshape(-1, 3)
        return np.array([np.all(pixels == np.array(rgb, np.uint8), axis=1).sum() for rgb in PALETTE.values()])
''')
_palette: dict = {}
exec(PALETTE_SRC, _palette)
PALETTE, palette_counts = _palette["PALETTE"], _palette["palette_counts"]

FAKE_MMDET_APIS = '''
import json, os
from pathlib import Path
import numpy as np
from PIL import Image

def _log(**record):
    with open(os.environ["FAKE_LOG"], "a") as f:
        f.write(json.dumps(record) + "\\n")

class _Detector:
    def __init__(self, classes):
        self.CLASSES = tuple(classes)

def init_detector(config, checkpoint=None, device="cuda:0", cfg_options=None):
    _log(call="init_detector", config=config, checkpoint=checkpoint, device=device)
    return _Detector(json.loads(Path(os.environ["FAKE_PLAN"]).read_text())["classes"])

def inference_detector(model, img):
    """Boxes from the plan, keyed by the last three parts of the image path."""
    assert isinstance(img, str), "upstream passes the image path"
    plan = json.loads(Path(os.environ["FAKE_PLAN"]).read_text())
    key = "/".join(Path(img).parts[-3:])
    with Image.open(img) as im:
        w, h = im.size
    bbox = [np.zeros((0, 5), np.float32) for _ in model.CLASSES]
    segm = [[] for _ in model.CLASSES]
    for obj in plan["images"][key]:
        c = model.CLASSES.index(obj["class"])
        bbox[c] = np.concatenate([bbox[c], np.asarray([obj["box"] + [obj["score"]]], np.float32)])
        x0, y0, x1, y1 = obj["mask"]
        mask = np.zeros((h, w), bool)
        mask[y0:y1, x0:x1] = True
        segm[c].append(mask)
    _log(call="inference_detector", image=key)
    return bbox if os.environ.get("FAKE_BBOX_ONLY") else (bbox, segm)
'''

FAKE_OPEN_CLIP = PALETTE_SRC + '''
import json, os
import torch

def _log(**record):
    with open(os.environ["FAKE_LOG"], "a") as f:
        f.write(json.dumps(record) + "\\n")

class _Visual:
    image_size = 224
    image_mean = (0.48145466, 0.4578275, 0.40821073)
    image_std = (0.26862954, 0.26130258, 0.27577711)

class _CLIP:
    visual = _Visual()

    def encode_image(self, images):  # (B, 64, 64, 3) uint8 -> one-hot of the commonest palette colour
        counts = torch.tensor(np.stack([palette_counts(im.numpy()) for im in images]))
        return torch.nn.functional.one_hot(counts.argmax(1), len(PALETTE)).float()

def load_openai_model(name, precision=None, device=None, cache_dir=None):
    _log(call="load_openai_model", name=name, precision=precision, device=str(device))
    return _CLIP()

def image_transform(image_size, is_train, mean=None, std=None, **kwargs):
    _log(call="image_transform", image_size=image_size, is_train=is_train, mean=list(mean), std=list(std))

    def transform(image):  # paste onto a fixed #999 canvas (ignored by the palette count) so crops batch
        crop = np.asarray(image.convert("RGB"))
        canvas = np.full((64, 64, 3), 153, np.uint8)
        canvas[: crop.shape[0], : crop.shape[1]] = crop[:64, :64]
        return torch.from_numpy(canvas)
    return transform

def get_tokenizer(name):
    _log(call="get_tokenizer", name=name)
    return lambda texts: torch.zeros(len(texts), 77, dtype=torch.long)
'''

FAKE_ZSC = '''
import json, os
import torch

def _log(**record):
    with open(os.environ["FAKE_LOG"], "a") as f:
        f.write(json.dumps(record) + "\\n")

def tqdm(*args, **kwargs):
    raise AssertionError("the runner should silence clip_benchmark's tqdm, as upstream does")

def zero_shot_classifier(model, tokenizer, classnames, templates, device, amp=True, cupl=False):
    _log(call="zero_shot_classifier", classnames=list(classnames),
         texts=[t.format(c="<c>") for t in templates], device=str(device))
    return torch.eye(len(classnames))

def run_classification(model, classifier, dataloader, device, amp=True):
    logits = []
    for images, target in tqdm(dataloader):
        _log(call="run_classification", batch=len(images))
        logits.append(model.encode_image(images) @ classifier)
    return torch.cat(logits), torch.zeros(sum(len(x) for x in logits), dtype=torch.long)
'''

FAKE_MODELSCOPE_PIPELINES = '''
import json, os
import numpy as np

ANSWER_COLOURS = {"red": (255, 0, 0), "green": (0, 128, 0), "blue": (0, 0, 255), "black": (0, 0, 0)}

def _log(**record):
    with open(os.environ["FAKE_LOG"], "a") as f:
        f.write(json.dumps(record) + "\\n")

def colour_of(image):
    pixels = np.asarray(image.convert("RGB"), dtype=float).reshape(-1, 3).mean(0)
    return min(ANSWER_COLOURS, key=lambda c: np.abs(pixels - ANSWER_COLOURS[c]).sum())

def answer(colour, question):
    """'Is there a ...?' -> yes unless black; '... <colour>?' -> yes when it is; other -> 'Yes'."""
    if question.startswith("Is there"):
        return "no" if colour == "black" else "yes"
    for c in ANSWER_COLOURS:
        if question.rstrip("?").endswith(" " + c):
            return "yes" if colour == c else "no"
    return "Yes"

class _Pipeline:
    def __call__(self, inputs):
        image, question = inputs["image"], inputs["question"]
        _log(call="vqa", size=list(image.size), question=question)
        return {"text": answer(colour_of(image), question)}

def pipeline(task=None, model=None, device="gpu", **kwargs):
    _log(call="pipeline", task=task, model=model, device=device)
    return _Pipeline()
'''


@pytest.fixture(scope="module")
def fakes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fake_packages")
    files = {
        "mmdet/__init__.py": "__version__ = '2.28.2'\n",
        "mmdet/apis.py": FAKE_MMDET_APIS,
        f"mmdet/.mim/configs/{CONFIG_NAME}": "# fake config\n",
        "open_clip/__init__.py": FAKE_OPEN_CLIP,
        "clip_benchmark/__init__.py": "",
        "clip_benchmark/metrics/__init__.py": "",
        "clip_benchmark/metrics/zeroshot_classification.py": FAKE_ZSC,
        "modelscope/__init__.py": "",
        "modelscope/pipelines/__init__.py": FAKE_MODELSCOPE_PIPELINES,
        "modelscope/utils/__init__.py": "",
        "modelscope/utils/constant.py": "class Tasks:\n    visual_question_answering = 'visual-question-answering'\n",
        "tensorar/__init__.py": "raise ImportError('the runner scripts must not import tensorar')\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def run_script(script: str, args: list, fakes: Path, log: Path, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environ.update(PYTHONPATH=str(fakes), FAKE_LOG=str(log), **env)
    return subprocess.run([sys.executable, str(SCRIPTS / script)] + [str(a) for a in args],
                          env=environ, capture_output=True, text=True, timeout=300)


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fake_tensorar_shadows_the_real_one(fakes, tmp_path):
    out = subprocess.run([sys.executable, "-c", "import tensorar"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(fakes)})
    assert out.returncode != 0 and "must not import tensorar" in out.stderr


@pytest.mark.parametrize("name", ["geneval_detect", "dpg_vqa"])
def test_scripts_import_no_tensorar_and_parse_as_python38(name):
    tree = ast.parse((SCRIPTS / f"{name}.py").read_text(), feature_version=(3, 8))  # envs: 3.9 and 3.8
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not any(m.split(".")[0] == "tensorar" for m in imported)


# --------------------------------------------------------------------------------------------------
# GenEval
# --------------------------------------------------------------------------------------------------
def test_geneval_constants_match_our_scorer():
    script, rules = load_script("geneval_detect"), geneval.GenEvalRules()
    assert (script.THRESHOLD, script.COUNTING_THRESHOLD, script.MAX_OBJECTS) == (
        rules.threshold, rules.counting_threshold, rules.max_objects)
    assert script.COLORS == geneval.COLORS
    assert script.BGCOLOR == "#999" and rules.bgcolor == (0x99, 0x99, 0x99)


def test_geneval_class_names_are_genevals_object_names():
    names = SHARED / "reference" / "t2i" / "prompts" / "geneval" / "evaluation_object_names.txt"
    if not names.is_file():
        pytest.skip(f"GenEval object names not found at {names}")
    assert load_script("geneval_detect").geneval_classnames(MMDET_COCO) == names.read_text().splitlines()


# One prompt per entry: metadata, then per image the objects (mmdet class, box, score, colour inside the
# mask, colour of the rest of the box or None, mask rectangle or None for the whole box).
GENEVAL_CASES = [
    # The mask matters: 144 red pixels under the mask, 1152 green ones elsewhere in the box.
    ({"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}], "prompt": "a photo of a red car"},
     [[("car", [4, 4, 40, 40], 0.9, "red", "green", [8, 8, 20, 20]),
       ("car", [44, 44, 60, 60], 0.5, "blue", None, None)]]),
    # Only the top box's colour counts (listed second: the runner must rank by score).
    ({"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}], "prompt": "a photo of a red car"},
     [[("car", [4, 4, 24, 24], 0.6, "red", None, None), ("car", [36, 36, 60, 60], 0.8, "blue", None, None)]]),
    ({"tag": "color_attr", "include": [{"class": "dog", "count": 1, "color": "red"},
                                       {"class": "cat", "count": 1, "color": "blue"}],
      "prompt": "a photo of a red dog and a blue cat"},
     [[("dog", [4, 4, 28, 28], 0.7, "red", None, None), ("cat", [36, 36, 60, 60], 0.8, "green", None, None)]]),
    ({"tag": "counting", "include": [{"class": "apple", "count": 2}], "exclude": [{"class": "apple", "count": 3}],
      "prompt": "a photo of two apples"},
     [[("apple", [2, 2, 18, 18], 0.95, "red", None, None), ("apple", [22, 22, 38, 38], 0.93, "red", None, None),
       ("apple", [42, 42, 58, 58], 0.85, "red", None, None)]]),
    ({"tag": "single_object", "include": [{"class": "computer mouse", "count": 1}],
      "prompt": "a photo of a computer mouse"},
     [[("mouse", [10, 10, 30, 30], 0.5, "black", None, None)]]),
    ({"tag": "position", "include": [{"class": "cat", "count": 1},
                                     {"class": "dog", "count": 1, "position": ["right of", 0]}],
      "prompt": "a photo of a dog right of a cat"},
     [[("cat", [4, 20, 24, 40], 0.8, "brown", None, None), ("dog", [40, 20, 60, 40], 0.9, "white", None, None)]]),
    # 0.3 is not kept (strict, float32); 0.31 is. Two images of one prompt.
    ({"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"},
     [[("bench", [10, 10, 50, 50], 0.3, "brown", None, None)],
      [("bench", [10, 10, 50, 50], 0.31, "brown", None, None)]]),
]
EXPECTED_CORRECT = [True, False, False, True, True, True, False, True]
EXPECTED_CORRECT_WITHOUT_MASKS = [False] + EXPECTED_CORRECT[1:]  # the red car's box is mostly green
# Colours the runner must classify: the top-`count` kept boxes of classes with a colour requirement.
EXPECTED_COLORS = {0: {"car": ["red", None]}, 1: {"car": [None, "blue"]}, 2: {"dog": ["red"], "cat": ["green"]}}


def _draw(objects) -> np.ndarray:
    image = np.full((64, 64, 3), 90, np.uint8)  # not a palette colour
    for _, (x0, y0, x1, y1), _, colour, fill, mask in objects:
        if fill:
            image[y0:y1, x0:x1] = PALETTE[fill]
        mx0, my0, mx1, my1 = mask or (x0, y0, x1, y1)
        image[my0:my1, mx0:mx1] = PALETTE[colour]
    return image


def _plan_entry(objects) -> list[dict]:
    return [{"class": cls, "box": box, "score": score, "mask": mask or box} for cls, box, score, _, _, mask in objects]


@pytest.fixture(scope="module")
def geneval_folder(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("geneval")
    images, plan = root / "samples", {"classes": list(MMDET_COCO), "images": {}}
    for index, (metadata, per_image) in enumerate(GENEVAL_CASES):
        geneval.write_prompt_images(images, index, metadata, [_draw(objs) for objs in per_image])
        for n, objs in enumerate(per_image):
            plan["images"][f"{index:05d}/samples/{n:04d}.png"] = _plan_entry(objs)
    (root / "plan.json").write_text(json.dumps(plan))
    return images, root / "plan.json"


class _PlanDetector:
    """The fake detector in-process, for our scorer's own path (geneval.score_folder)."""

    def __init__(self, plan: dict, root: Path, masks: bool):
        self.plan, self.masks = plan, masks
        self.keys = iter([s.filename for s in geneval.list_samples(root)])  # score_folder's order

    def detect(self, image: np.ndarray):
        key = next(self.keys)
        out = {}
        for obj in self.plan["images"][key]:
            name = load_script("geneval_detect").GENEVAL_NAMES.get(obj["class"], obj["class"])
            x0, y0, x1, y1 = obj["mask"]
            mask = np.zeros(image.shape[:2], bool)
            mask[y0:y1, x0:x1] = True
            prev = out.get(name, ([], [], []))
            out[name] = (prev[0] + [obj["box"]], prev[1] + [obj["score"]], prev[2] + [mask])
        return {name: ClassDetections(np.asarray(b), np.asarray(s), np.stack(m) if self.masks else None)
                for name, (b, s, m) in out.items()}


class _PaletteColours:
    def classify(self, crops, classname):
        return [geneval.COLORS[int(np.argmax(palette_counts(c)))] for c in crops]


@pytest.mark.parametrize("masks", [True, False], ids=["masks", "bbox-only"])
def test_geneval_detect_round_trips_through_our_scorer(fakes, geneval_folder, tmp_path, masks):
    images, plan = geneval_folder
    (tmp_path / "m2f.pth").write_bytes(b"fake")
    (tmp_path / "ViT-L-14.pt").write_bytes(b"fake")
    config = [] if not masks else ["--detector-config", tmp_path / "m2f.py"]  # bbox-only: mmdet's own config
    (tmp_path / "m2f.py").write_text("# fake\n")
    out, log = tmp_path / "raw" / "geneval.jsonl", tmp_path / "log.jsonl"
    env = {"FAKE_PLAN": str(plan)} | ({} if masks else {"FAKE_BBOX_ONLY": "1"})
    proc = run_script("geneval_detect.py", ["--images", images, "--out", out, *config,
                                            "--detector-checkpoint", tmp_path / "m2f.pth",
                                            "--clip-weights", tmp_path / "ViT-L-14.pt", "--device", "cpu",
                                            "--allow-clip-checksum-mismatch"],
                      fakes, log, **env)
    assert proc.returncode == 0, proc.stderr
    assert "is not OpenAI's ViT-L-14.pt" in proc.stderr  # the fake weights fail the checksum: allowed, a warning

    # The file: every image, every detection unthresholded, colours exactly where the rules look.
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    samples = geneval.list_samples(images)
    assert [line["filename"] for line in lines] == [s.filename for s in samples]
    assert [line["metadata"] for line in lines] == [s.metadata for s in samples]
    names = load_script("geneval_detect").GENEVAL_NAMES
    for line in lines:
        index, n = int(line["filename"][:5]), int(line["filename"][-8:-4])  # "00012/samples/0003.png"
        objs = GENEVAL_CASES[index][1][n]
        classes = [names.get(o[0], o[0]) for o in objs]
        assert list(line["detections"]) == sorted(set(classes), key=_geneval_classnames().index)
        for name, det in line["detections"].items():
            mine = [o for o, c in zip(objs, classes) if c == name]
            assert det["boxes"] == [o[1] for o in mine]
            assert det["scores"] == [float(np.float32(o[2])) for o in mine]
            want = EXPECTED_COLORS.get(index, {}).get(name, [None] * len(mine))
            if not masks and index == 0:
                want = ["green", None]
            assert det["colors"] == want, (line["filename"], name)

    # Our scorer on the file == the hand-worked answers == our scorer run in-process on the same fakes.
    records = geneval.score_raw_detections(out)
    assert [r["correct"] for r in records] == (EXPECTED_CORRECT if masks else EXPECTED_CORRECT_WITHOUT_MASKS)
    assert records[1]["reason"] == "expected red car>=1, found 0 red; and 1 blue"
    assert records[2]["reason"] == "expected blue cat>=1, found 0 blue; and 1 green"
    in_process = geneval.score_folder(images, _PlanDetector(json.loads(plan.read_text()), images, masks),
                                      _PaletteColours(), classnames=_geneval_classnames())
    strip = [{k: r[k] for k in ("filename", "correct", "reason", "details")} for r in records]
    assert strip == [{k: r[k] for k in ("filename", "correct", "reason", "details")} for r in in_process]

    # How the models were called: upstream's arguments, templates and batch size.
    calls = read_log(log)
    init = next(c for c in calls if c["call"] == "init_detector")
    assert init["checkpoint"] == str(tmp_path / "m2f.pth") and init["device"] == "cpu"
    assert init["config"].endswith(f"mmdet/.mim/configs/{CONFIG_NAME}" if not masks else "m2f.py")
    clip = next(c for c in calls if c["call"] == "load_openai_model")
    assert clip == {"call": "load_openai_model", "name": str(tmp_path / "ViT-L-14.pt"), "precision": "fp32",
                    "device": "cpu"}
    assert next(c for c in calls if c["call"] == "get_tokenizer")["name"] == "ViT-L-14"
    assert next(c for c in calls if c["call"] == "image_transform")["is_train"] is False
    classifiers = [c for c in calls if c["call"] == "zero_shot_classifier"]
    assert [c["texts"] for c in classifiers] == [
        [f"a photo of a <c> {n}", f"a photo of a <c>-colored {n}", "a photo of a <c> object"]
        for n in ("car", "dog", "cat")]  # built once per class
    assert all(c["classnames"] == list(geneval.COLORS) for c in classifiers)
    assert [c["batch"] for c in calls if c["call"] == "run_classification"] == [1, 1, 1, 1]
    assert len([c for c in calls if c["call"] == "inference_detector"]) == len(samples)


def _geneval_classnames() -> list[str]:
    return load_script("geneval_detect").geneval_classnames(MMDET_COCO)


def test_geneval_detect_stops_on_a_clip_checksum_mismatch_unless_allowed(fakes, geneval_folder, tmp_path):
    images, plan = geneval_folder
    (tmp_path / "m2f.pth").write_bytes(b"fake")
    (tmp_path / "ViT-L-14.pt").write_bytes(b"not OpenAI's weights")
    proc = run_script("geneval_detect.py", ["--images", images, "--out", tmp_path / "out.jsonl", "--device", "cpu",
                                            "--detector-checkpoint", tmp_path / "m2f.pth",
                                            "--clip-weights", tmp_path / "ViT-L-14.pt"],
                      fakes, tmp_path / "log.jsonl", FAKE_PLAN=str(plan))
    assert proc.returncode != 0 and "--allow-clip-checksum-mismatch" in proc.stderr
    assert str(tmp_path / "ViT-L-14.pt") in proc.stderr
    assert not (tmp_path / "out.jsonl").exists() and not read_log(tmp_path / "log.jsonl")  # no model was loaded


def test_the_evaluator_docs_say_the_official_stacks_unpickle_fully(repo_root):
    readme = (repo_root / "workflow" / "envs" / "README.md").read_text()
    assert "unpickl" in readme and "--allow-clip-checksum-mismatch" in readme
    for script in ("geneval_detect.py", "dpg_vqa.py"):
        assert "Trusted code" in (SCRIPTS / script).read_text()


def test_geneval_detect_missing_weights_name_the_file_and_source(fakes, geneval_folder, tmp_path):
    images, plan = geneval_folder
    (tmp_path / "clip.pt").write_bytes(b"fake")
    (tmp_path / "m2f.pth").write_bytes(b"fake")
    common = ["--images", images, "--out", tmp_path / "out.jsonl", "--device", "cpu"]
    proc = run_script("geneval_detect.py", common + ["--detector-checkpoint", tmp_path / "none.pth",
                                                     "--clip-weights", tmp_path / "clip.pt"],
                      fakes, tmp_path / "log.jsonl", FAKE_PLAN=str(plan))
    assert proc.returncode != 0
    assert str(tmp_path / "none.pth") in proc.stderr and "download.openmmlab.com" in proc.stderr
    proc = run_script("geneval_detect.py", common + ["--detector-checkpoint", tmp_path / "m2f.pth",
                                                     "--clip-weights", tmp_path / "none.pt"],
                      fakes, tmp_path / "log.jsonl", FAKE_PLAN=str(plan))
    assert proc.returncode != 0
    assert str(tmp_path / "none.pt") in proc.stderr and "ViT-L-14.pt" in proc.stderr
    assert not (tmp_path / "out.jsonl").exists() and not read_log(tmp_path / "log.jsonl")


# --------------------------------------------------------------------------------------------------
# DPG-Bench
# --------------------------------------------------------------------------------------------------
# itemZ is the first data row (the official loader skips it) and has no grid; itemB's "Is it a photo?" is
# answered "Yes", which counts only when corrected.
DPG_ROWS = [
    ("itemZ", 1, "0", "entity - whole (tree)", "Is there a tree?"),
    ("itemA", 1, "0", "entity - whole (dog)", "Is there a dog?"),
    ("itemA", 2, "1", "attribute - color (dog, red)", "Is the dog red?"),
    ("itemB", 1, "0", "entity - whole (cat)", "Is there a cat?"),
    ("itemB", 2, "1", "attribute - color (cat, blue)", "Is the cat blue?"),
    ("itemB", 3, "0", "global - style (photo)", "Is it a photo?"),
]
DPG_GRIDS = {"itemA": ("red", "red", "green", "black"), "itemB": ("blue", "black", "blue", "red"),
             "extra": ("red", "red", "red", "red")}  # extra: a grid without questions
RES = 16
# Hand-worked: itemA crops 1, 1, 1/2, 0 -> 5/8; itemB (quirks) 2/3, 0, 2/3, 1/3 -> 5/12; extra dropped.
DPG_SCORE_OFFICIAL = 100 * (5 / 8 + 5 / 12) / 2
# Corrected ("Yes" counts): itemB 1, 1/3, 1, 2/3 -> 3/4.
DPG_SCORE_CORRECTED = 100 * (5 / 8 + 3 / 4) / 2


@pytest.fixture(scope="module")
def dpg_inputs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("dpg")
    header = ",".join(dpg.CSV_COLUMNS)
    rows = [f'{item},text,kw,{qid},"{dep}",{tup.split(" -")[0]},,{tup.replace(",", ";")},{q}'
            for item, qid, dep, tup, q in DPG_ROWS]
    (root / "dpg_bench.csv").write_text("\n".join([header] + rows) + "\n")
    colours = {"red": (255, 0, 0), "green": (0, 128, 0), "blue": (0, 0, 255), "black": (0, 0, 0)}
    for item, cs in DPG_GRIDS.items():
        dpg.write_grid(root / "grids", item, [np.full((RES, RES, 3), colours[c], np.uint8) for c in cs])
    return root / "grids", root / "dpg_bench.csv"


class _ColourVQA:
    """The fake modelscope pipeline's rule, in-process (dpg.VQAModel)."""

    def __init__(self):
        namespace: dict = {}
        exec(FAKE_MODELSCOPE_PIPELINES, namespace)
        self._ns = namespace

    def answer(self, image, question):
        from PIL import Image
        return self._ns["answer"](self._ns["colour_of"](Image.fromarray(image)), question)


def test_dpg_vqa_round_trips_through_our_scorer(fakes, dpg_inputs, tmp_path):
    grids, csv_path = dpg_inputs
    model_dir = tmp_path / "mplug"
    model_dir.mkdir()
    (model_dir / "configuration.json").write_text("{}")
    out, log = tmp_path / "raw" / "dpg.jsonl", tmp_path / "log.jsonl"
    proc = run_script("dpg_vqa.py", ["--images", grids, "--questions", csv_path, "--out", out,
                                     "--model-dir", model_dir, "--resolution", RES, "--device", "cpu"], fakes, log)
    assert proc.returncode == 0, proc.stderr
    assert "1 grids have no questions" in proc.stderr

    # The file: 4 crops per grid in sorted order, every question of the item (CSV order), verbatim.
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(x["item_id"], x["crop"]) for x in lines] == [(i, k) for i in ("extra", "itemA", "itemB") for k in range(4)]
    assert [list(x["answers"]) for x in lines if x["item_id"] == "itemB"] == [
        ["Is there a cat?", "Is the cat blue?", "Is it a photo?"]] * 4
    assert all(x["answers"] == {} for x in lines if x["item_id"] == "extra")
    assert lines[4]["answers"] == {"Is there a dog?": "yes", "Is the dog red?": "yes"}
    assert lines[11]["answers"] == {"Is there a cat?": "yes", "Is the cat blue?": "no", "Is it a photo?": "Yes"}

    official = dpg.score_answers_file(csv_path, out)
    assert official.score == pytest.approx(DPG_SCORE_OFFICIAL, abs=1e-12)
    assert set(official.failed) == {"extra.png"}
    in_process = dpg.score_folder(csv_path, grids, _ColourVQA(), RES)
    assert (official.score, official.l1, official.l2, official.crop_scores) == (
        in_process.score, in_process.l1, in_process.l2, in_process.crop_scores)

    # Corrected scoring needs every grid to have questions: without the extra grid, same answers.
    kept = tmp_path / "kept.jsonl"
    kept.write_text("".join(json.dumps(x) + "\n" for x in lines if x["item_id"] != "extra"))
    corrected = dpg.score_answers_file(csv_path, kept, official_quirks=False)
    assert corrected.score == pytest.approx(DPG_SCORE_CORRECTED, abs=1e-12)
    with pytest.raises(KeyError, match="extra"):
        dpg.score_answers_file(csv_path, out, official_quirks=False)

    calls = read_log(log)
    assert calls[0] == {"call": "pipeline", "task": "visual-question-answering", "model": str(model_dir),
                        "device": "cpu"}
    vqa = [c for c in calls if c["call"] == "vqa"]
    assert len(vqa) == 4 * (2 + 3) and all(c["size"] == [RES, RES] for c in vqa)


def test_dpg_vqa_missing_inputs_name_the_file_and_source(fakes, dpg_inputs, tmp_path):
    grids, csv_path = dpg_inputs
    common = ["--images", grids, "--out", tmp_path / "out.jsonl", "--resolution", RES, "--device", "cpu"]
    proc = run_script("dpg_vqa.py", common + ["--questions", csv_path, "--model-dir", tmp_path / "none"],
                      fakes, tmp_path / "log.jsonl")
    assert proc.returncode != 0
    assert str(tmp_path / "none") in proc.stderr and "mplug_visual-question-answering_coco_large_en" in proc.stderr
    (tmp_path / "mplug").mkdir()
    (tmp_path / "mplug" / "configuration.json").write_text("{}")
    proc = run_script("dpg_vqa.py", common + ["--questions", tmp_path / "none.csv", "--model-dir", tmp_path / "mplug"],
                      fakes, tmp_path / "log.jsonl")
    assert proc.returncode != 0 and "none.csv" in proc.stderr and "ELLA" in proc.stderr
    proc = run_script("dpg_vqa.py", ["--images", grids, "--out", tmp_path / "out.jsonl", "--resolution", RES * 2,
                                     "--questions", csv_path, "--model-dir", tmp_path / "mplug"],
                      fakes, tmp_path / "log.jsonl")
    assert proc.returncode != 0 and "--resolution" in proc.stderr
    assert not (tmp_path / "out.jsonl").exists() and not read_log(tmp_path / "log.jsonl")


# --------------------------------------------------------------------------------------------------
# The environment files
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, python", [("geneval", "3.9"), ("dpg", "3.8")])
def test_env_files_are_pinned_and_explained(name, python):
    path = ENVS / f"{name}.yaml"
    env = yaml.safe_load(path.read_text())
    assert set(env) == {"channels", "dependencies"}  # Snakemake names the env itself
    assert "defaults" not in env["channels"] and env["channels"][0] == "conda-forge"
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = [d for d in env["dependencies"] if isinstance(d, dict)]
    assert f"python={python}" in conda and len(pip) == 1 and set(pip[0]) == {"pip"}
    assert all("=" in d for d in conda)
    for req in pip[0]["pip"]:
        assert req.startswith("--") or ("==" in req and not any(op in req for op in "<>~!")), req
    # Every pin is explained: a comment on its line or on the line above.
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines[lines.index("dependencies:"):], lines.index("dependencies:")):
        if line.lstrip().startswith("- ") and not line.lstrip().startswith("- pip:"):
            assert "#" in line or lines[i - 1].lstrip().startswith("#"), f"{path.name}: {line.strip()}"
