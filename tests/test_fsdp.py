"""Sharded training (`--strategy fsdp`): FSDP2 on CPU with gloo, in real processes (torchrun), against
DDP; sharded checkpoints resumed after real signals, also on another number of processes; the
consolidated final.pt read by `tensorar sample`; a tiny Janus trained with fp32 master weights."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tensorar.models.loading import load_model, save_model
from tensorar.stages.train import main
from tensorar.training.sharding import TrainingLoss, shard_model


def _train_test_helpers():
    """tests/test_train.py's codes writer, command lines and comparisons (pytest's importlib mode puts no
    test folder on sys.path, so it is loaded by path)."""
    spec = importlib.util.spec_from_file_location("_train_helpers", Path(__file__).with_name("test_train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_helpers = _train_test_helpers()
_env, assert_same_weights, base_args = _helpers._env, _helpers.assert_same_weights, _helpers.base_args
metrics, weights, write_codes = _helpers.metrics, _helpers.weights, _helpers.write_codes
CLASSES, GRID, VOCAB = _helpers.CLASSES, _helpers.GRID, _helpers.VOCAB
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]


def torchrun(processes: int, args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*TORCHRUN, str(processes), "-m", "tensorar.train", *args], env=_env(),
                          stderr=subprocess.PIPE, text=True, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def codes(tmp_path_factory) -> Path:
    return write_codes(tmp_path_factory.mktemp("fsdp") / "codes")


@pytest.fixture(scope="module")
def base_file(tmp_path_factory, tiny) -> Path:
    """A tiny base without dropout, for the tensorar runs."""
    path = tmp_path_factory.mktemp("base") / "base.pt"
    save_model(path, tiny.gpt(0, vocab=VOCAB, classes=CLASSES, tokens=GRID * GRID, token_dropout_p=0.0,
                              resid_dropout_p=0.0, ffn_dropout_p=0.0))
    return path


def tensorar_args(codes: Path, run: Path, base: Path, steps: int, *extra: str) -> list[str]:
    return ["--codes", str(codes), "--run-dir", str(run), "--mode", "tensorar", "--init", str(base), "--k", "3",
            "--lr-base", "1e-4", "--lr-plugin", "1e-3", "--steps", str(steps), "--global-batch-size", "8",
            "--log-every", "1", "--device", "cpu", *extra]


# ------------------------------------------------------------------------------------------------
def test_shard_model_wraps_blocks_and_root_and_keeps_the_state_dict_keys(tiny):
    """One process, a group of one: every block and the root are FSDP units; state-dict keys do not change
    under activation checkpointing (so checkpoints stay readable by `load_model`)."""
    from torch.distributed.fsdp import FSDPModule

    from tensorar.distributed import cleanup_distributed, init_distributed

    model = tiny.tensorar(tiny.gpt(), k=2).train()
    keys = set(model.state_dict())
    with pytest.raises(ValueError, match="fp32 master weights"):
        shard_model(tiny.gpt().to(torch.bfloat16), "fsdp")
    with pytest.raises(ValueError, match="strategy 'zero'"):
        shard_model(model, "zero")
    init_distributed("cpu", group=True)
    try:
        loss_module = shard_model(model, "fsdp", activation_checkpointing=True, compute_dtype=torch.float32)
        assert isinstance(loss_module, TrainingLoss) and isinstance(loss_module, FSDPModule)
        assert all(isinstance(block, FSDPModule) for block in model.backbone.blocks())
        assert set(model.state_dict()) == keys
        assert all(p.dtype == torch.float32 for p in model.parameters())
        tokens, labels = torch.randint(0, 64, (4, 16)), torch.randint(0, 5, (4,))
        loss, per_slot = loss_module(tokens, {"labels": labels})
        loss.backward()
        assert per_slot.shape == (2,) and all(p.grad is not None for p in model.parameters() if p.requires_grad)
    finally:
        cleanup_distributed()


@pytest.mark.parametrize("mode, extra", [
    ("base", []),
    ("base", ["--activation-checkpointing", "--micro-batch-size", "2"]),
    ("tensorar", ["--activation-checkpointing", "--micro-batch-size", "2"]),
], ids=["base", "base-ac-micro", "tensorar-ac-micro"])
def test_two_process_fsdp_trains_like_one_process_ddp(codes, base_file, tmp_path, mode, extra):
    args = (lambda run, *more: base_args(codes, tmp_path / run, 4, *more)) if mode == "base" else \
        (lambda run, *more: tensorar_args(codes, tmp_path / run, base_file, 4, *more))
    main(args("ddp"))
    result = torchrun(2, args("fsdp", "--strategy", "fsdp", *extra))
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "fsdp" / "train_config.json").read_text())
    assert config["world_size"] == 2 and config["args"]["strategy"] == "fsdp"
    assert config["micro_batches"] == (2 if extra else 1) and config["param_dtype"] == "float32"
    ddp, fsdp = metrics(tmp_path / "ddp"), metrics(tmp_path / "fsdp")
    assert [r["step"] for r in fsdp] == [1, 2, 3, 4]
    # Float tolerance: the two processes sum in another order, and AdamW's normalised first steps
    # amplify that a little (2-process DDP differs from 1-process DDP as much).
    np.testing.assert_allclose([r["loss"] for r in fsdp], [r["loss"] for r in ddp], rtol=2e-5)
    np.testing.assert_allclose([r["grad_norm"] for r in fsdp], [r["grad_norm"] for r in ddp], rtol=1e-4)
    assert_same_weights(weights(tmp_path / "fsdp" / "final.pt"), weights(tmp_path / "ddp" / "final.pt"), atol=1e-4)
    # Sharded checkpoints: a distributed checkpoint folder per saved step.
    assert (tmp_path / "fsdp" / "checkpoints" / "step_0000004" / ".metadata").is_file()


def test_one_process_fsdp_gives_ddp_bitwise_and_its_final_file_samples_the_same(codes, tiny, tmp_path):
    """The consolidated final.pt is our usual model file: `tensorar sample` reads it unchanged and, for the
    same weights (one process: FSDP's arithmetic is DDP's), writes the same images."""
    from tensorar.models.vq import vq_checkpoint
    from tensorar.stages.sample import main as sample

    main(base_args(codes, tmp_path / "ddp", 3, "--ema-decay", "0.9"))
    main(base_args(codes, tmp_path / "fsdp", 3, "--ema-decay", "0.9", "--strategy", "fsdp"))
    ddp, fsdp = (torch.load(tmp_path / run / "final.pt", weights_only=True) for run in ("ddp", "fsdp"))
    assert_same_weights(fsdp["model"], ddp["model"])
    assert_same_weights(fsdp["ema"], ddp["ema"])
    assert "optimizer" not in fsdp and fsdp["step"] == 3 and fsdp["param_dtype"] == "float32"
    assert {k: fsdp[k] for k in ("kind", "family", "model_config")} == {k: ddp[k] for k in ("kind", "family",
                                                                                           "model_config")}
    torch.save(vq_checkpoint(tiny.vq(codes=VOCAB)), tmp_path / "vq.pt")
    images = {}
    for run in ("ddp", "fsdp"):
        sample(["--ckpt", str(tmp_path / run / "final.pt"), "--vq", str(tmp_path / "vq.pt"), "--out",
                str(tmp_path / f"{run}.npz"), "--num-samples", "6", "--cfg-scale", "2.0", "--device", "cpu"])
        with np.load(tmp_path / f"{run}.npz") as npz:
            images[run] = npz["arr_0"]
    assert images["fsdp"].shape[0] == 6 and np.array_equal(images["fsdp"], images["ddp"])


def _start(processes: int, args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([*TORCHRUN, str(processes), "-m", "tensorar.train", *args], env=_env(),
                            stderr=subprocess.PIPE, text=True)


def _signal_tree(pid: int, sig: int) -> None:
    """`sig` to torchrun and every process under it, as Slurm signals every process of a job step
    (torchrun starts its workers in sessions of their own, so a process-group kill misses them)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            todo += [int(child) for child in children.read_text().split()]
    for target in pids:
        try:
            os.kill(target, sig)
        except ProcessLookupError:  # already gone
            pass


def _wait_for(path: Path, proc: subprocess.Popen) -> None:
    deadline = time.time() + 120
    while not path.exists():
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() is not None else ""
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds torchrun's workers in Linux's /proc")
def test_killed_fsdp_run_resumes_bit_exactly_also_on_another_number_of_processes(codes, tmp_path):
    steps = 40
    args = lambda run: base_args(codes, tmp_path / run, steps, "--strategy", "fsdp", "--ckpt-every", "4",  # noqa: E731
                                 "--ema-decay", "0.9")
    assert torchrun(2, args("straight")).returncode == 0

    # SIGKILL to the launcher and both workers mid-way; the same command on 2 processes resumes bit-exactly.
    run = tmp_path / "killed"
    proc = _start(2, args("killed"))
    _wait_for(run / "checkpoints" / "step_0000008", proc)
    _signal_tree(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    time.sleep(1)  # nothing of the killed run may live on to finish it
    assert not (run / "final.pt").exists()
    resumed = torchrun(2, args("killed"))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr and not list((run / "checkpoints").glob(".*.tmp"))
    assert [r["step"] for r in metrics(run)] == list(range(1, steps + 1))
    assert [r["loss"] for r in metrics(run)] == [r["loss"] for r in metrics(tmp_path / "straight")]
    assert_same_weights(weights(run / "final.pt"), weights(tmp_path / "straight" / "final.pt"))
    ema = load_model(run / "final.pt", use_ema=True).state_dict()
    assert_same_weights(ema, load_model(tmp_path / "straight" / "final.pt", use_ema=True).state_dict())

    # SIGTERM (what Slurm sends before the time limit): the workers checkpoint the step they are in and exit
    # 143; the run resumes on ONE process from the 2-process shards (resharded), matching within float tolerance.
    run = tmp_path / "preempted"
    proc = _start(2, args("preempted"))
    _wait_for(run / "checkpoints" / "step_0000004", proc)
    _signal_tree(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "preempted by SIGTERM" in err
    stopped_at = max(r["step"] for r in metrics(run))
    assert 4 <= stopped_at < steps and (run / "checkpoints" / f"step_{stopped_at:07d}" / ".metadata").is_file()
    resumed = subprocess.run([sys.executable, "-m", "tensorar.train", *args("preempted")], env=_env(),
                             stderr=subprocess.PIPE, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"at step {stopped_at}" in resumed.stderr
    assert json.loads((run / "train_config.json").read_text())["world_size"] == 1
    straight = metrics(tmp_path / "straight")
    assert [r["loss"] for r in metrics(run)][:stopped_at] == [r["loss"] for r in straight][:stopped_at]
    np.testing.assert_allclose([r["loss"] for r in metrics(run)], [r["loss"] for r in straight], rtol=1e-4)
    assert_same_weights(weights(run / "final.pt"), weights(tmp_path / "straight" / "final.pt"), atol=1e-4)


# ------------------------------------------------------------------------------------------------
@pytest.fixture
def janus_data(tmp_path, t2i_ref, monkeypatch) -> dict:
    """A tiny Janus release saved in bf16 (as Janus-Pro ships), registered as preset "Janus-tiny", with codes
    and prompt-token conditions for it (tests/test_janus.py builds the same model from the fixture)."""
    pytest.importorskip("transformers", reason="the Janus backbone runs transformers' JanusForConditionalGeneration")
    from tensorar.data.conditions import finish, write_shard
    from tensorar.models import janus

    ref = torch.load(t2i_ref / "janus_tiny_ref.pt", weights_only=True)
    model = janus.JanusBackbone(janus.JanusBackboneConfig(hf_config=ref["config"], num_image_tokens=16,
                                                          prompt_length=9, bos_token_id=1, pad_token_id=0,
                                                          boi_token_id=3))
    model.model.load_state_dict(ref["state_dict"], strict=True)
    hf = model.model.to(torch.bfloat16)
    hf.generation_config.bos_token_id, hf.generation_config.pad_token_id = 1, 0
    hf.generation_config.generation_kwargs = {"boi_token_id": 3}
    hf.save_pretrained(tmp_path / "janus-tiny")
    monkeypatch.setitem(janus.JANUS_MODELS, "Janus-tiny", janus.JanusBackboneConfig(
        hf_config={"text_config": {"hidden_size": 32}}, num_image_tokens=16, prompt_length=9))

    items = 8
    codes = tmp_path / "codes"
    codes.mkdir()
    np.save(codes / "codes_00000.npy", np.random.default_rng(0).integers(0, 64, (items, 1, 16)).astype(np.uint16))
    np.save(codes / "labels_00000.npy", np.zeros(items, np.int64))
    (codes / "manifest.json").write_text(json.dumps({
        "grid": [4, 4], "vocab_size": 64, "num_classes": 0, "num_augmentations": 1, "count": items,
        "condition": "caption", "complete": True,
        "shards": [{"codes": "codes_00000.npy", "labels": "labels_00000.npy", "count": items}]}))
    prompts = {key: ref[key].repeat(items // 2, 1) for key in ("input_ids", "attention_mask")}
    conditions = tmp_path / "conditions"
    conditions.mkdir()
    finish(conditions, [write_shard(conditions, 0, prompts)], prompts, {"encoder": "fixture prompts"}, complete=True)
    return {"init": tmp_path / "janus-tiny", "codes": codes, "conditions": conditions}


def test_tiny_janus_trains_under_fsdp_with_fp32_masters_and_resumes_in_that_dtype(janus_data, tmp_path):
    args = lambda run, steps: [  # noqa: E731
        "--codes", str(janus_data["codes"]), "--conditions", str(janus_data["conditions"]), "--run-dir",
        str(tmp_path / run), "--mode", "finetune", "--family", "janus", "--init", str(janus_data["init"]),
        "--init-preset", "Janus-tiny", "--steps", str(steps), "--global-batch-size", "4", "--lr-base", "1e-5",
        "--log-every", "1", "--ckpt-every", "2", "--strategy", "fsdp", "--activation-checkpointing",
        "--micro-batch-size", "2", "--device", "cpu"]
    main(args("straight", 4))
    main(args("resumed", 2))
    main(args("resumed", 4))  # a longer --steps resumes from the sharded state of step 2
    log = (tmp_path / "resumed" / "train.log").read_text()
    assert "bfloat16 weights -> fp32 master weights" in log  # the release's dtype, raised for training
    assert "resuming from" in log and "step_0000002 at step 2" in log
    state = torch.load(tmp_path / "resumed" / "checkpoints" / "step_0000002" / "training_state.pt", weights_only=True)
    assert state["param_dtype"] == "float32"
    final = torch.load(tmp_path / "resumed" / "final.pt", weights_only=True)
    assert final["param_dtype"] == "float32" and final["family"] == "janus"
    assert {v.dtype for v in final["model"].values() if v.is_floating_point()} == {torch.float32}
    # The updates at lr 1e-5 survive (in bf16 most would round away), and the resumed run is the straight one.
    trained = weights(tmp_path / "resumed" / "final.pt")
    initial = load_model(janus_data["init"], "janus", "Janus-tiny").float().state_dict()
    assert not torch.equal(trained["model.model.generation_head.proj_out.weight"],
                           initial["model.model.generation_head.proj_out.weight"])
    assert_same_weights(trained, weights(tmp_path / "straight" / "final.pt"))
    assert [r["loss"] for r in metrics(tmp_path / "resumed")] == [r["loss"] for r in metrics(tmp_path / "straight")]
