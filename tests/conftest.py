"""Shared fixtures: reference data (../shared/reference, next to the checkout, never copied in; tests that
need it skip cleanly when it is absent) and the tiny models most tests build.

`tiny` makes models small enough for CPU tests, with the weights the official inits leave at zero
(LlamaGen's output head, TensorAR's output projections) redrawn, so every output depends on its input
and an invariance test can fail.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from tensorar.models.llamagen import GPT, GPTConfig
from tensorar.models.tensorar import TensorAR, TensorARConfig
from tensorar.models.loading import save_model
from tensorar.models.vq import VQConfig, VQModel, vq_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TENSORAR_SHARED", REPO_ROOT.parent / "shared"))
REFERENCE = SHARED / "reference"


def _reference(name: str) -> Path:
    path = REFERENCE / name
    if not path.is_dir():
        pytest.skip(f"reference data not found at {path}")
    return path


def load_workflow_config(name: str) -> dict:
    """A shipped workflow config (config/<name>), schema-validated with its defaults filled, as the
    Snakefile loads it."""
    import yaml
    from snakemake.utils import validate

    config = yaml.safe_load((REPO_ROOT / "config" / name).read_text())
    validate(config, str(REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    return config


@pytest.fixture(scope="session")
def workflow_config():
    return load_workflow_config


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def llamagen_ref() -> Path:
    return _reference("llamagen")


@pytest.fixture(scope="session")
def adm_ref() -> Path:
    return _reference("adm")


@pytest.fixture(scope="session")
def omv_ref() -> Path:
    return _reference("open_magvit2")


@pytest.fixture(scope="session")
def t2i_ref() -> Path:
    return _reference("t2i")


@pytest.fixture(scope="session")
def paper_ref() -> Path:
    return _reference("paper")


class Tiny:
    """Factories of tiny models (class-conditional LlamaGen GPT, TensorAR around it, a VQ tokenizer)."""

    @staticmethod
    def gpt(seed: int = 0, *, vocab: int = 64, classes: int = 5, tokens: int = 16, dim: int = 32, layers: int = 2,
            heads: int = 2, head_std: float = 0.5, **config) -> GPT:
        torch.manual_seed(seed)
        cfg = GPTConfig(dim=dim, n_layer=layers, n_head=heads, multiple_of=32, vocab_size=vocab, num_classes=classes,
                        block_size=tokens, **config)
        model = GPT(cfg)
        nn.init.normal_(model.output.weight, std=head_std)  # LlamaGen zero-inits the head: all logits would be 0
        return model.eval()

    @staticmethod
    def tensorar(base: GPT, k: int = 3, *, trained: bool = True, seed: int = 2, std: float = 0.3,
                 **plugin) -> TensorAR:
        """TensorAR around `base`; `trained` redraws its zero-initialised output projections, as if trained
        (at init the wrapper is exactly the base)."""
        torch.manual_seed(seed)
        model = TensorAR(base, TensorARConfig(k=k, **plugin))
        if trained:
            for qt in (model.q_in, model.q_out):
                nn.init.normal_(qt.mlp[-1].weight, std=std)
        return model.eval()

    @staticmethod
    def vq(codes: int = 64, seed: int = 3) -> VQModel:
        """A real VQ tokenizer with `codes` entries that decodes an h x w grid to 2h x 2w images."""
        torch.manual_seed(seed)
        cfg = VQConfig(codebook_size=codes, codebook_embed_dim=8, encoder_ch_mult=(1, 2), decoder_ch_mult=(1, 2),
                       z_channels=32, base_channels=32, num_res_blocks=1)
        return VQModel(cfg).eval()

    @classmethod
    def t2i_files(cls, root: Path, prompts: list[dict]) -> Path:
        """A tiny text-to-image LlamaGen GPT (toy text features), its VQ tokenizer, a GenEval prompt file and
        a two-item DPG-Bench prompt folder, under `root` -> root."""
        torch.manual_seed(0)
        model = GPT(GPTConfig(dim=32, n_layer=2, n_head=2, multiple_of=32, vocab_size=64, block_size=16,
                              model_type="t2i", cls_token_num=16, caption_dim=32))
        nn.init.normal_(model.output.weight, std=0.5)
        save_model(root / "t2i.pt", model)
        torch.save(vq_checkpoint(cls.vq(codes=64)), root / "vq.pt")
        (root / "geneval.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
        (root / "dpg").mkdir()
        for item, text in (("itemA", "a 3 and a 7"), ("itemB", "two green 5s")):
            (root / "dpg" / f"{item}.txt").write_text(text)
        return root

    @staticmethod
    def captioned_codes(root: Path) -> Path:
        """Ten toy captioned canvases tokenized by a tiny (untrained) VQ -> the codes folder under `root`."""
        from tensorar.stages.extract_codes import main as extract_codes
        from tensorar.toy import captioned_digits

        captioned_digits.build(root / "train", 10, seed=0)
        torch.manual_seed(0)
        torch.save(vq_checkpoint(VQModel(VQConfig(codebook_size=16, codebook_embed_dim=4, encoder_ch_mult=(1, 2, 2),
                                                  decoder_ch_mult=(1, 2, 2), z_channels=8, base_channels=8,
                                                  num_res_blocks=1, norm_groups=4))), root / "vq.pt")
        extract_codes(["--data", str(root / "train"), "--vq", str(root / "vq.pt"), "--out", str(root / "codes"),
                       "--image-size", "16", "--augment", "center", "--no-flip"])
        return root / "codes"


@pytest.fixture(scope="session")
def tiny() -> type[Tiny]:
    return Tiny


@pytest.fixture(autouse=True)
def _small_thread_count():
    # Tests use tiny tensors, where intra-op threads only add overhead (and oversubscribe the 2 cores
    # when a test starts subprocesses beside it).
    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True)
def _fresh_compile_caches():
    # torch.compile caches graphs per code object: the compiled decode step of every family and test shares
    # one, and dynamo refuses a ninth recompile (recompile_limit), so tests that each compile "once" must
    # start from empty caches whatever ran before them in the same process.
    torch._dynamo.reset()
    yield
