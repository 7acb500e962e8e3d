"""What a run trains: its setup and identity, the model (fresh from a preset, from an --init base, or
rebuilt from a checkpoint's configs), AdamW's parameter groups and the EMA of the weights."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
import torch.nn as nn

from tensorar.checkpoint import load_state_dict_strict
from tensorar.fileio import identity_hash, sha256_file
from tensorar.models.backbone import Backbone
from tensorar.models.loading import load_model
from tensorar.models.registry import family
from tensorar.models.tensorar import TensorAR, TensorARConfig
from tensorar.training.options import MODES, TrainOptions

DROPOUT_FIELDS = ("token_dropout_p", "resid_dropout_p", "ffn_dropout_p")  # what --dropout sets, every family
# Settings that never change what a step computes: a run resumes across changes to these (a longer
# --steps extends it; the memory knobs change only float reduction order); any other change, or other
# codes or another --init file, starts it afresh. The strategy is part of the identity: DDP and FSDP
# checkpoints differ in layout.
NOT_IDENTITY = ("steps", "ckpt_every", "keep_steps", "log_every", "activation_checkpointing", "micro_batch_size")


@dataclass(frozen=True)
class RunSetup:
    """What is trained, on what, and where: the settings besides `TrainOptions`."""

    codes: str  # codes folder (tensorar extract_codes)
    run_dir: str
    mode: str  # base | finetune | tensorar
    family: str = "llamagen"  # backbone family (tensorar.models.registry)
    model: str | None = None  # preset (base mode; the official --init file's default preset)
    init: str | None = None  # base checkpoint of finetune / tensorar: ours or an official file
    init_preset: str | None = None
    plugin: TensorARConfig | None = None  # tensorar mode
    conditions: str | None = None  # text-image codes: the conditions folder (tensorar encode_captions)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r}: known {', '.join(MODES)}")

    def record(self, opts: TrainOptions) -> dict:
        """The flat settings saved in every checkpoint as "args"."""
        plugin = asdict(self.plugin) if self.plugin is not None else {}
        return {**{k: v for k, v in asdict(self).items() if k != "plugin"}, **plugin, **asdict(opts)}

    def identity(self, opts: TrainOptions, manifest: dict) -> dict:
        """What the run's weights are made of (docs/architecture.md, "Reruns"): every setting that changes
        a step, the codes' identity and the --init file's bytes (not its path)."""
        settings = {k: v for k, v in self.record(opts).items()
                    if k not in (*NOT_IDENTITY, "run_dir", "codes", "init", "conditions")}
        codes = manifest.get("identity") or identity_hash({k: v for k, v in manifest.items()
                                                           if k not in ("data", "tokenizer_path")})
        init = sha256_file(self.init) if self.init and Path(self.init).is_file() else self.init
        conditions = None
        if self.conditions is not None:  # the encoder's identity and the captions', recorded by encode_captions
            conditions = json.loads((Path(self.conditions) / "conditions.json").read_text())["encoder"]
        return {"settings": settings, "codes": codes, "init_sha256": init, "conditions": conditions}


def build_model(setup: RunSetup, opts: TrainOptions, manifest: dict, log) -> nn.Module:
    """A fresh model for `setup.mode`: a backbone from its preset, or the `--init` base (+ plug-in)."""
    fam = family(setup.family)
    h, w = manifest["grid"]
    data_fields = {"vocab_size": manifest["vocab_size"], "block_size": h * w}
    if fam.condition == "class":
        data_fields["num_classes"] = manifest["num_classes"]
    dropout = {} if opts.dropout is None else dict.fromkeys(DROPOUT_FIELDS, opts.dropout)
    torch.manual_seed(opts.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    if setup.mode == "base":
        # Only the fields the family's config has (Open-MAGVIT2's vocabulary follows from its bit split);
        # the built model must then fit the codes.
        known = {f.name for f in fields(fam.config_class)}
        model = fam.model_class(fam.config(setup.model, **{k: v for k, v in data_fields.items() if k in known},
                                           **dropout))
        if model.vocab_size != manifest["vocab_size"]:
            raise SystemExit(f"--model {setup.model} has a vocabulary of {model.vocab_size} tokens but the codes in "
                             f"{setup.codes} have {manifest['vocab_size']}: pick the preset made for that tokenizer")
        return model

    init = load_model(setup.init, setup.family, setup.init_preset or setup.model, block_size=h * w)
    if not isinstance(init, Backbone):
        raise SystemExit(f"--init {setup.init} is a {type(init).__name__} checkpoint; {setup.mode} mode starts "
                         "from a base model")
    dtypes = {p.dtype for p in init.parameters()}
    if dtypes != {torch.float32}:
        # A release in bf16 (Janus-Pro loads with dtype="auto") would train bf16 weights, and most AdamW
        # updates at lr 1e-5 fall below bf16's resolution: the masters are fp32, compute runs in bf16.
        log.info(f"--init {setup.init}: {', '.join(sorted(map(str, dtypes)))} weights -> fp32 master weights")
        init = init.float()
    if init.family != fam.name:
        raise SystemExit(f"--init {setup.init} holds a {init.family} model, not --family {fam.name}")
    if setup.model is not None and not same_architecture(init.config, fam.config(setup.model)):
        raise SystemExit(f"--init {setup.init} is not a {setup.model} model (its architecture differs from the "
                         "preset's): name its own preset with --model")
    too_small = (init.num_tokens != h * w or init.vocab_size < manifest["vocab_size"]
                 or (fam.condition == "class" and init.num_classes < manifest["num_classes"]))
    if too_small:
        raise SystemExit(f"--init {setup.init} ({init.num_tokens} tokens, vocab {init.vocab_size}, "
                         f"{init.num_classes} classes) does not fit the codes in {setup.codes} ({data_fields})")
    base = init
    if dropout:  # the rates live in the frozen config saved with the model: rebuild, then copy the weights
        base = fam.model_class(replace(init.config, **dropout))
        load_state_dict_strict(base, init.state_dict(), f"--init {setup.init}")
    log.info(f"{setup.mode}: base weights from {setup.init}")
    if setup.mode == "finetune":
        return base
    return TensorAR(base, setup.plugin)


def model_from_configs(saved: dict) -> nn.Module:
    """The architecture a checkpoint records (`model_checkpoint`'s family, kind and configs) with fresh
    fp32 weights, into which a resume loads the saved masters. fp32 before loading: a Janus config
    carries its release's dtype (bf16), which would round the saved fp32 masters."""
    fam = family(saved["family"])
    model = fam.model_class(fam.config_class.from_dict(saved["model_config"]))
    if saved["kind"] == "tensorar":
        model = TensorAR(model, TensorARConfig.from_dict(saved["plugin_config"]))
    return model.float()


def same_architecture(a, b) -> bool:
    """Two configs of a family describe the same network up to data sizes and dropout rates."""
    ignore = {*DROPOUT_FIELDS, "vocab_size", "num_classes", "block_size", "caption_dim"}
    return {k: v for k, v in asdict(a).items() if k not in ignore} == {k: v for k, v in asdict(b).items()
                                                                      if k not in ignore}


def param_groups(model: nn.Module, lr_base: float, lr_plugin: float, weight_decay: float) -> list[dict]:
    """AdamW groups: (base, plug-in) x (>= 2-D weights decayed, norms/biases/1-D not)."""
    parts = [(model.base_parameters(), lr_base), (model.plugin_parameters(), lr_plugin)] \
        if isinstance(model, TensorAR) else [(model.parameters(), lr_base)]
    groups = []
    for params, lr in parts:
        params = [p for p in params if p.requires_grad]
        for decay in (True, False):
            chosen = [p for p in params if (p.dim() >= 2) == decay]
            if chosen:
                groups.append({"params": chosen, "lr": lr, "peak_lr": lr, "weight_decay": weight_decay * decay})
    return groups


class EMA:
    """Exponential moving average of a model's state dict, in fp32 (buffers are copied, not averaged).
    Under FSDP the entries are the rank's shards (DTensors), averaged where they live."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.state = {k: v.detach().clone().float() if v.is_floating_point() else v.detach().clone()
                      for k, v in model.state_dict().items()}
        self._params = {name for name, _ in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for name, value in model.state_dict().items():
            if name in self._params:
                self.state[name].lerp_(value.float(), 1.0 - self.decay)
            else:
                self.state[name].copy_(value)
