"""Caption features for LlamaGen's text-to-image GPT, computed as LlamaGen computes them: the condition
{"caption": (B, 120, C) float32, "caption_mask": (B, 120) bool} that `tensorar.models.llamagen.GPT`
(model_type "t2i") takes.

LlamaGen (Sun et al. 2024, commit ce98ec4; reference spec t2i/spec.md §2.2):
- `language/t5.py` (`T5Embedder`, after PixArt / DeepFloyd IF): flan-t5-xl's `T5EncoderModel`, every
  caption cleaned by `clean_caption` twice, tokenised with max_length 120, padding="max_length",
  truncation and the closing </s>; the features are `last_hidden_state` (B, 120, 2048), right padded.
- `autoregressive/sample/sample_t2i.py` and `dataset/t2i.py` then LEFT-pad them: the valid tokens
  (</s> included) move to the end, the padded positions come first and are zeroed, and the mask is
  flipped to match. The model hides padded positions from every query through that mask.

Ours, not LlamaGen's: the encoder is loaded from local files only (no hub download), and the features
are returned as float32 whatever `dtype` the encoder ran in (LlamaGen's extractor also stores float32;
its sampler keeps bf16). `dtype` defaults to bf16, LlamaGen's `--precision` default for both.

Reading order: where the encoder comes from -> caption cleaning -> the left-padded layout -> the encoder.
ftfy, beautifulsoup4 and transformers are imported only when used.
"""
from __future__ import annotations

import html
import os
import re
import urllib.parse
import warnings
from pathlib import Path

import torch

from tensorar.errors import InputError

MAX_LENGTH = 120  # caption tokens (LlamaGen's t5_feature_max_len, = the t2i GPT's cls_token_num)
FLAN_T5_XL_HINT = (
    "LlamaGen's text encoder is google/flan-t5-xl: download it from huggingface.co/google/flan-t5-xl "
    "(e.g. `huggingface-cli download google/flan-t5-xl --local-dir pretrained_models/t5-ckpt/flan-t5-xl`) "
    "and pass that directory"
)


# --------------------------------------------------------------------------------------------------
# Caption cleaning: PixArt / DeepFloyd IF's `clean_caption`, as LlamaGen's T5Embedder applies it (twice).
# The training captions went through exactly these steps, so every pattern and its order matter.
# --------------------------------------------------------------------------------------------------
_TLDS = r"(?:com|co|ru|net|org|edu|gov|it)"
# Two URL patterns: scheme-prefixed (http:, https:) or "www:"-prefixed, or any dotted name with a TLD.
_URLS = [
    re.compile(r"\b((?:https?:(?:\/{1,3}|[a-zA-Z0-9%])|[a-zA-Z0-9.\-]+[.]" + _TLDS + r"[\w/-]*\b\/?(?!@)))"),
    re.compile(r"\b((?:www:(?:\/{1,3}|[a-zA-Z0-9%])|[a-zA-Z0-9.\-]+[.]" + _TLDS + r"[\w/-]*\b\/?(?!@)))"),
]
# CJK strokes, katakana extensions, enclosed CJK, CJK compatibility, CJK ideographs (ext. A, Yijing, main).
_CJK = [r"[\u31c0-\u31ef]+", r"[\u31f0-\u31ff]+", r"[\u3200-\u32ff]+", r"[\u3300-\u33ff]+",
        r"[\u3400-\u4dbf]+", r"[\u4dc0-\u4dff]+", r"[\u4e00-\u9fff]+"]
# Every kind of dash -> "-".
_DASHES = (r"[\u002D\u058A\u05BE\u1400\u1806\u2010-\u2015\u2E17\u2E1A\u2E3A\u2E3B\u2E40\u301C\u3030\u30A0"
           r"\uFE31\uFE32\uFE58\uFE63\uFF0D]+")
# Runs of decorative punctuation -> one space (***SALE***, #tag, [brackets], {braces}, |pipes|, \ / *).
_BAD_PUNCT = re.compile(r"[#®•©™&@·º½¾¿¡§~\)\(\]\[\}\{\|\\/\*]{1,}")
_FILE_EXTENSIONS = r"(?:png|jpg|jpeg|bmp|webp|eps|pdf|apk|mp4)"
_DASH_OR_UNDERSCORE = re.compile(r"(?:\-|\_)")

# (pattern, replacement) steps between the HTML pass and the dash/underscore rule.
_SYMBOL_STEPS = [
    (r"@[\w\d]+\b", ""),  # @nickname
    *((cjk, "") for cjk in _CJK),
    (_DASHES, "-"),
    (r"[`´«»“”¨]", '"'),  # quotes to one standard
    (r"[‘’]", "'"),
    (r"&quot;?", ""),
    (r"&amp", ""),
    (r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}", " "),  # IP addresses
    (r"\d:\d\d\s+$", ""),  # article ids
    (r"\\n", " "),  # a literal backslash-n
    (r"#\d{1,3}\b", ""),  # "#123"
    (r"#\d{5,}\b", ""),  # "#12345.."
    (r"\b\d{6,}\b", ""),  # "123456.."
    (r"[\S]+\." + _FILE_EXTENSIONS, ""),  # file names
    (r"[\"\']{2,}", r'"'),  # """SOLD OUT"""
    (r"[\.]{2,}", r" "),
    (_BAD_PUNCT, r" "),
    (r"\s+\.\s+", r" "),  # " . "
]
# Steps after ftfy / HTML unescaping: product codes, shop boilerplate, sizes, spacing, edge punctuation.
_WORD_STEPS = [
    (r"\b[a-zA-Z]{1,3}\d{3,15}\b", ""),  # jc6640
    (r"\b[a-zA-Z]+\d+[a-zA-Z]+\b", ""),  # jc6640vc
    (r"\b\d+[a-zA-Z]+\d+\b", ""),  # 6640vc231
    (r"(worldwide\s+)?(free\s+)?shipping", ""),
    (r"(free\s)?download(\sfree)?", ""),
    (r"\bclick\b\s(?:for|on)\s\w+", ""),
    (r"\b" + _FILE_EXTENSIONS + r"(\simage[s]?)?", ""),
    (r"\bpage\s+\d+\b", ""),
    (r"\b\d*[a-zA-Z]+\d+[a-zA-Z]+\d+[a-zA-Z\d]*\b", r" "),  # j2d1a2a...
    (r"\b\d+\.?\d*[xх×]\d+\.?\d*\b", ""),  # sizes, 1920x1080 (Latin x, Cyrillic х, ×)
    (r"\b\s+\:\s+", r": "),
    (r"(\D[,\./])\b", r"\1 "),  # a space after punctuation glued to the next word
    (r"\s+", " "),
    # No strip here: the original calls `caption.strip()` without keeping the result, so the edge
    # rules below see the leading/trailing space.
    (r"^[\"\']([\w\W]+)[\"\']$", r"\1"),  # surrounding quotes
    (r"^[\'\_,\-\:;]", r""),
    (r"[\'\_,\-\:\-\+]$", r""),
    (r"^\.\S+$", ""),
]


def _basic_clean(text: str) -> str:
    import ftfy

    text = ftfy.fix_text(text)  # mojibake, odd unicode
    return html.unescape(html.unescape(text)).strip()  # doubly escaped entities (&amp;amp;)


def _strip_html(text: str) -> str:
    from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning

    with warnings.catch_warnings():  # bs4 warns when a caption looks like a file name or URL
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        return BeautifulSoup(text, features="html.parser").text


def clean_caption(caption) -> str:
    """One pass of PixArt / DeepFloyd IF's caption cleaning (LlamaGen `language/t5.py`)."""
    caption = urllib.parse.unquote_plus(str(caption))  # %20 and + as spaces
    caption = caption.strip().lower()
    caption = re.sub("<person>", "person", caption)
    for url in _URLS:
        caption = url.sub("", caption)
    caption = _strip_html(caption)
    for pattern, replacement in _SYMBOL_STEPS:
        caption = re.sub(pattern, replacement, caption)
    # this-is-my-cute-cat / this_is_my_cute_cat: more than 3 separators read as spaces
    if len(_DASH_OR_UNDERSCORE.findall(caption)) > 3:
        caption = _DASH_OR_UNDERSCORE.sub(" ", caption)
    caption = _basic_clean(caption)
    for pattern, replacement in _WORD_STEPS:
        caption = re.sub(pattern, replacement, caption)
    return caption.strip()


def preprocess_caption(caption, clean: bool = True) -> str:
    """What T5Embedder feeds the tokenizer: `clean_caption` applied twice (as in training); with
    clean=False (its use_text_preprocessing=False) only lower-cased and stripped."""
    if not clean:
        return str(caption).lower().strip()
    return clean_caption(clean_caption(caption))


# --------------------------------------------------------------------------------------------------
# The left-padded layout the t2i GPT reads (spec §2.2)
# --------------------------------------------------------------------------------------------------
def left_pad(features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenizer-order features (B, L, C) and mask (B, L) -> left-padded, masked features and mask.

    Each row's valid tokens keep their order and move to the end; the positions before them are padding
    with zero features. For T5's right-padded masks this is sample_t2i's flip of the mask, roll of the
    features and `* mask` exactly.
    """
    mask = mask.bool()
    B, L, C = features.shape
    lengths = mask.sum(1)  # (B,)
    out_mask = torch.arange(L, device=mask.device)[None, :] >= (L - lengths)[:, None]  # (B, L)
    out = features.new_zeros(B, L, C)
    out[out_mask] = features[mask]  # row-major on both sides: row i's valid tokens, in order
    return out, out_mask


def pad_valid_features(valid: torch.Tensor, max_length: int = MAX_LENGTH) -> tuple[torch.Tensor, torch.Tensor]:
    """One caption's stored valid features ((n, C), or LlamaGen's .npy layout (1, n, C)) -> its
    left-padded (max_length, C) float32 features and (max_length,) bool mask, as `dataset/t2i.py` builds
    them (the first max_length tokens kept)."""
    valid = valid.reshape(-1, valid.size(-1))[:max_length].float()  # (n, C)
    n = valid.size(0)
    features = valid.new_zeros(max_length, valid.size(1))
    features[max_length - n :] = valid
    mask = torch.arange(max_length, device=valid.device) >= max_length - n
    return features, mask


# --------------------------------------------------------------------------------------------------
# The encoder
# --------------------------------------------------------------------------------------------------
def check_model_dir(model_dir: str | os.PathLike) -> Path:
    """The flan-t5-xl directory, or FileNotFoundError saying where users get it."""
    path = Path(model_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"T5 text encoder directory not found: {path}\n  ({FLAN_T5_XL_HINT})")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} has no config.json: not a transformers model directory\n  ({FLAN_T5_XL_HINT})")
    return path


class T5TextEncoder:
    """flan-t5-xl's encoder with its tokenizer: captions -> the t2i GPT's condition.

    encoder = T5TextEncoder("pretrained_models/t5-ckpt/flan-t5-xl")
    cond = encoder(["a red apple on a table"])  # {"caption": (1, 120, 2048), "caption_mask": (1, 120)}
    """

    def __init__(self, model_dir: str | os.PathLike, device="cpu", dtype: torch.dtype = torch.bfloat16,
                 max_length: int = MAX_LENGTH, clean: bool = True):
        from transformers import AutoTokenizer, T5EncoderModel

        path = check_model_dir(model_dir)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            # A full flan-t5 checkpoint also holds the decoder: T5EncoderModel loads the encoder only.
            self.model = T5EncoderModel.from_pretrained(path, dtype=dtype, local_files_only=True).to(device).eval()
        except Exception as err:  # damaged files surface as many error types inside transformers / safetensors
            files = ", ".join(sorted(p.name for p in path.iterdir() if p.is_file()))
            raise InputError(f"{path}: the T5 model folder cannot be loaded ({type(err).__name__}: "
                             f"{str(err).strip().splitlines()[0][:300] if str(err).strip() else 'no detail'}; files: "
                             f"{files}). A damaged or partial download: download it again\n  ({FLAN_T5_XL_HINT})") from err
        self.max_length = max_length
        self.clean = clean

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dim(self) -> int:
        """Feature width C (flan-t5-xl: 2048, the t2i GPT's caption_dim)."""
        return self.model.config.d_model

    def tokenize(self, captions: list[str]) -> dict[str, torch.Tensor]:
        """Cleaned captions -> input_ids and attention_mask (B, max_length), right padded, </s> added."""
        texts = [preprocess_caption(c, self.clean) for c in captions]
        return self.tokenizer(texts, max_length=self.max_length, padding="max_length", truncation=True,
                              return_attention_mask=True, add_special_tokens=True, return_tensors="pt")

    @torch.no_grad()
    def encode(self, captions: list[str] | str) -> dict[str, torch.Tensor]:
        """Captions -> {"caption": (B, max_length, C) float32, left padded, zero at padding;
        "caption_mask": (B, max_length) bool, True at the valid tokens (</s> included)}."""
        if isinstance(captions, str):
            captions = [captions]
        tokens = self.tokenize(list(captions))
        mask = tokens["attention_mask"].to(self.device)  # (B, L)
        hidden = self.model(input_ids=tokens["input_ids"].to(self.device), attention_mask=mask).last_hidden_state
        features, caption_mask = left_pad(hidden.float(), mask)  # (B, L, C), (B, L)
        return {"caption": features, "caption_mask": caption_mask}

    __call__ = encode


def text_features(captions: list[str] | str, model_dir: str | os.PathLike, device="cpu",
                  dtype: torch.dtype = torch.bfloat16, max_length: int = MAX_LENGTH) -> dict[str, torch.Tensor]:
    """One-off: load the encoder from `model_dir` and encode `captions` (see `T5TextEncoder.encode`)."""
    return T5TextEncoder(model_dir, device, dtype, max_length).encode(captions)
