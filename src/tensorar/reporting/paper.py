"""The TensorAR paper's published numbers (../shared/reference/paper/paper.txt, Tables 2-6), shown beside ours.

Transcribed as printed; None where the paper prints "-". FID / IS / precision / recall are ImageNet
256x256 class-conditional (50k samples, ADM protocol); precision and recall are fractions; GenEval
scores are fractions, DPG-Bench scores percentages; Table 6b's latency is in seconds per image (one
A100, fp32, batch 128, AR + tokenizer decode, as the paper's Fig. 4 text says). Ablations (Tables 5,
6) use LlamaGen-B with k=4, d=1 and the exponential schedule unless the row varies that setting.

A paper-scale row finds its value here by key: Table 2 rows by the backbone's `paper_row` (config),
ablation rows by the variant's schedule, k or depth. Toy rows never do (`NOT_IN_PAPER`).
tests/test_paper_values.py checks every number against the transcription in ../shared when present.
"""
from __future__ import annotations

from dataclasses import dataclass

NOT_IN_PAPER = "n/a (toy scale: not in the paper)"
CONTROL_NOT_IN_PAPER = "n/a (the control is ours, not in the paper)"
NO_PAPER_ROW = "n/a (no such row in the paper)"
OTHER_SETTING = "n/a (the paper ran this row with another setting)"


@dataclass(frozen=True)
class ImageNetRow:
    model: str  # as printed
    params: str  # as printed (M = million)
    fid: float
    inception_score: float | None
    precision: float | None
    recall: float | None

    def metric(self, name: str):
        return getattr(self, name)


def _row(model, params, fid, inception_score, precision=None, recall=None) -> ImageNetRow:
    return ImageNetRow(model, params, fid, inception_score, precision, recall)


# --------------------------------------------------------------------------------------------------
# Table 2: class-to-image generation on ImageNet 256x256
# --------------------------------------------------------------------------------------------------
# Other methods, as printed (type, row).
TABLE2_OTHER_METHODS: list[tuple[str, ImageNetRow]] = [
    ("Mask AR", _row("MAGVIT-v2", "307M", 1.78, 319.4)),
    ("Mask AR", _row("MaskBit", "305M", 1.52, 328.6)),
    ("Mask AR", _row("MAR", "943M", 1.55, 303.7)),
    ("Causal AR", _row("DART", "812M", 3.98, 256.8)),
    ("Causal AR", _row("RQTran.", "3.8B", 3.80, 323.7)),
    ("Causal AR", _row("ViT-VQGAN-re", "1.7B", 3.04, 227.4)),
    ("Causal AR", _row("SAR-XL", "893M", 2.76, 273.8, 0.84, 0.55)),
    ("Causal AR", _row("RandAR-L", "1.4B", 2.15, 322.0, 0.79, 0.62)),
    ("Causal AR", _row("VAR", "2.0B", 1.73, 350.2, 0.82, 0.60)),
]

# The backbones TensorAR was applied to: paper_row key -> {"base": row, "tensorar": row}.
TABLE2: dict[str, dict[str, ImageNetRow]] = {
    "open-magvit2-b": {
        "base": _row("Open-MAGVIT2-B (256x256)", "343M", 3.08, 258.3, 0.85, 0.51),
        "tensorar": _row("Open-MAGVIT2-B +TensorAR", "352M (+2.7%)", 2.91, 260.2, 0.86, 0.50),
    },
    "open-magvit2-l": {
        "base": _row("Open-MAGVIT2-L (256x256)", "804M", 2.51, 271.7, 0.84, 0.54),
        "tensorar": _row("Open-MAGVIT2-L +TensorAR", "820M (+2.0%)", 2.35, 273.4, 0.84, 0.53),
    },
    "llamagen-b-256": {
        "base": _row("LlamaGen-B (256x256)", "111M", 5.46, 193.6, 0.83, 0.45),
        "tensorar": _row("LlamaGen-B +TensorAR", "116M (+4.6%)", 4.71, 225.8, 0.85, 0.45),
    },
    "llamagen-l-256": {
        "base": _row("LlamaGen-L (256x256)", "343M", 3.80, 248.3, 0.83, 0.52),
        "tensorar": _row("LlamaGen-L +TensorAR", "352M (+2.7%)", 2.78, 254.8, 0.82, 0.56),
    },
    "llamagen-l-384": {
        "base": _row("LlamaGen-L (384x384)", "343M", 3.07, 256.1, 0.83, 0.52),
        "tensorar": _row("LlamaGen-L (384x384) +TensorAR", "352M (+2.7%)", 2.52, 258.9, 0.83, 0.55),
    },
    "llamagen-xl-384": {
        "base": _row("LlamaGen-XL (384x384)", "775M", 2.62, 244.1, 0.80, 0.57),
        "tensorar": _row("LlamaGen-XL (384x384) +TensorAR", "789M (+1.9%)", 2.29, 260.4, 0.81, 0.59),
    },
    "llamagen-xxl-384": {
        "base": _row("LlamaGen-XXL (384x384)", "1411M", 2.34, 253.9, 0.81, 0.60),
        "tensorar": _row("LlamaGen-XXL (384x384) +TensorAR", "1432M (+1.5%)", 2.03, 267.7, 0.82, 0.61),
    },
}
PAPER_ROWS = tuple(TABLE2)  # the values a backbone's `paper_row` may take (the schema's enum)

# The backbone behind each Table 2 row (family, preset, config overrides), for claim 1b's parameter counts
# at the paper's sizes; TensorAR as the paper configures it: k = 4, depth 1 (Appendix A.1).
TABLE2_PRESETS: dict[str, tuple[str, str, dict]] = {
    "open-magvit2-b": ("open_magvit2", "AR-B", {}),
    "open-magvit2-l": ("open_magvit2", "AR-L", {}),
    "llamagen-b-256": ("llamagen", "GPT-B", {}),
    "llamagen-l-256": ("llamagen", "GPT-L", {}),
    "llamagen-l-384": ("llamagen", "GPT-L", {"block_size": 576}),
    "llamagen-xl-384": ("llamagen", "GPT-XL", {"block_size": 576}),
    "llamagen-xxl-384": ("llamagen", "GPT-XXL", {"block_size": 576}),
}
PAPER_PLUGIN = {"k": 4, "depth": 1}
# The paper's text-to-image backbones (Appendix A.1), by our family names: claim 7 says "both".
T2I_BACKBONES = {"llamagen_t2i": "LlamaGen", "janus": "Janus-Pro-7B"}


def printed_overhead(paper_row: str) -> str:
    """The overhead Table 2 prints for a row's +TensorAR model, e.g. "+4.6%"."""
    params = TABLE2[paper_row]["tensorar"].params
    return params[params.index("(") + 1:params.index(")")] if "(" in params else params

# --------------------------------------------------------------------------------------------------
# Tables 5 and 6: ablations on LlamaGen-B (the baseline row is Table 2's LlamaGen-B)
# --------------------------------------------------------------------------------------------------
ABLATION_BACKBONE = "llamagen-b-256"
PAPER_SETTING = {"k": 4, "depth": 1, "schedule": "exponential"}  # what the ablations hold fixed

TABLE5: dict[str, ImageNetRow] = {  # by schedule (our registry's names)
    "linear": _row("Linear", "", 4.79, 218.8, 0.85, 0.44),
    "sine": _row("Sine", "", 4.75, 221.3, 0.84, 0.45),
    "sqrt": _row("Square root", "", 4.84, 214.9, 0.83, 0.43),
    "exponential": _row("Exponential", "", 4.71, 225.8, 0.85, 0.45),
}
TABLE6A: dict[int, ImageNetRow] = {  # by k
    2: _row("k=2", "", 4.78, 221.3, 0.84, 0.45),
    4: _row("k=4", "", 4.71, 225.8, 0.85, 0.45),
    8: _row("k=8", "", 4.68, 226.7, 0.85, 0.46),
}
TABLE6B: dict[int, ImageNetRow] = {  # by depth (Table 6b prints no IS)
    1: _row("d=1", "", 4.71, None, 0.85, 0.45),
    2: _row("d=2", "", 4.79, None, 0.85, 0.46),
    4: _row("d=4", "", 4.90, None, 0.82, 0.43),
}
TABLE6B_BASELINE = _row("Baseline", "", 5.46, None, 0.83, 0.45)
TABLE6B_LATENCY_S = {"base": 0.11, 1: 0.12, 2: 0.14, 4: 0.15}

# --------------------------------------------------------------------------------------------------
# Tables 3 and 4: text-to-image benchmarks
# --------------------------------------------------------------------------------------------------
GENEVAL_COLUMNS = ("single_object", "two_object", "counting", "colors", "position", "color_attr", "overall")
DPG_COLUMNS = ("global", "entity", "attribute", "relation", "other", "overall")

TABLE3_OTHER_METHODS: dict[str, tuple[float, ...]] = {  # GenEval, GENEVAL_COLUMNS order
    "Emu3-Gen": (0.98, 0.71, 0.34, 0.81, 0.17, 0.21, 0.54),
    "DALL-E 3": (0.96, 0.87, 0.47, 0.83, 0.43, 0.45, 0.67),
    "SD3-Medium": (0.99, 0.94, 0.72, 0.89, 0.33, 0.60, 0.74),
    "SEED-X": (0.97, 0.58, 0.26, 0.80, 0.19, 0.14, 0.49),
    "Show-o": (0.95, 0.52, 0.49, 0.82, 0.11, 0.28, 0.53),
    "D-DiT": (0.97, 0.80, 0.54, 0.76, 0.32, 0.50, 0.65),
}
TABLE3: dict[str, dict[str, tuple[float, ...]]] = {  # paper_row -> {"base", "tensorar"}
    "llamagen-t2i": {"base": (0.71, 0.34, 0.21, 0.58, 0.07, 0.04, 0.32),
                     "tensorar": (0.99, 0.70, 0.57, 0.89, 0.28, 0.19, 0.61)},
    "janus-pro-7b": {"base": (0.99, 0.89, 0.59, 0.90, 0.79, 0.66, 0.80),
                     "tensorar": (0.99, 0.93, 0.53, 0.92, 0.85, 0.79, 0.83)},
}
TABLE4_OTHER_METHODS: dict[str, tuple[float, ...]] = {  # DPG-Bench, DPG_COLUMNS order
    "PixArt-alpha": (74.97, 79.32, 78.60, 82.57, 76.96, 71.11),
    "Emu3-Gen": (85.21, 86.68, 86.84, 90.22, 83.15, 80.60),
    "DALL-E 3": (90.97, 89.61, 88.39, 90.58, 89.83, 83.50),
    "SD3-Medium": (87.90, 91.01, 88.83, 80.70, 88.68, 84.08),
    "Hunyuan-DiT": (84.59, 80.59, 88.01, 74.36, 86.41, 78.87),
    "PixArt-Sigma": (86.89, 82.89, 88.94, 86.59, 87.68, 80.54),
}
TABLE4: dict[str, dict[str, tuple[float, ...]]] = {
    "llamagen-t2i": {"base": (78.72, 58.63, 68.22, 76.63, 44.00, 43.13),
                     "tensorar": (84.50, 81.92, 81.65, 90.68, 74.80, 73.33)},
    "janus-pro-7b": {"base": (86.90, 88.90, 89.40, 89.32, 89.48, 84.19),
                     "tensorar": (86.39, 90.67, 90.66, 91.35, 84.52, 85.57)},
}
T2I_PAPER_ROWS = tuple(TABLE3)


# --------------------------------------------------------------------------------------------------
# Lookups for the table renderer
# --------------------------------------------------------------------------------------------------
def table2_row(paper_row: str | None, method: str) -> ImageNetRow | str:
    """The paper's Table 2 row of a backbone's base / TensorAR run, or why there is none."""
    if method == "finetune":
        return CONTROL_NOT_IN_PAPER
    if paper_row is None or paper_row not in TABLE2:
        return NO_PAPER_ROW
    return TABLE2[paper_row][method]


def ablation_row(table: str, paper_row: str | None, method: str, variant: dict | None) -> ImageNetRow | str:
    """The paper's Table 5 / 6a / 6b row for a run: base, or a variant (k, depth, schedule). Only runs of
    the paper's ablation backbone whose other settings are the paper's have one."""
    if method == "finetune":
        return CONTROL_NOT_IN_PAPER
    if paper_row != ABLATION_BACKBONE:
        return NO_PAPER_ROW
    if method == "base":
        return TABLE6B_BASELINE if table == "table6b" else TABLE2[ABLATION_BACKBONE]["base"]
    varied = {"table5": "schedule", "table6a": "k", "table6b": "depth"}[table]
    if any(variant[key] != value for key, value in PAPER_SETTING.items() if key != varied):
        return OTHER_SETTING
    rows = {"table5": TABLE5, "table6a": TABLE6A, "table6b": TABLE6B}[table]
    return rows.get(variant[varied], NO_PAPER_ROW)
