"""tensorar train: the three modes, checkpoints / resume, preemption, and world-size invariance."""
from __future__ import annotations

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

from tensorar.data.codes import load_codes
from tensorar.models.llamagen import GPT, GPTConfig
from tensorar.models.loading import load_model, save_model
from tensorar.models.tensorar import TensorAR, TensorARConfig
from tensorar.stages.train import main
from tensorar.training.batches import global_batch, global_noise

GRID, VOCAB, CLASSES, ITEMS, AUGS = 4, 16, 3, 24, 2


@pytest.fixture(autouse=True)
def _one_thread():
    # These models are tiny: one thread is as fast, and far faster when other processes share the cores
    # (OpenMP threads spin-wait for each other).
    torch.set_num_threads(1)


def write_codes(path: Path, seed: int = 0) -> Path:
    """A codes dir in extract_codes' format whose tokens depend on the class (so there is something to learn)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, ITEMS).astype(np.int64)
    pattern = rng.integers(0, VOCAB, (CLASSES, GRID * GRID))
    codes = np.repeat(pattern[labels][:, None], AUGS, axis=1)  # (N, A, T)
    noisy = rng.random(codes.shape) < 0.2
    codes = np.where(noisy, rng.integers(0, VOCAB, codes.shape), codes).astype(np.int32)
    path.mkdir(parents=True)
    np.save(path / "codes_00000.npy", codes)
    np.save(path / "labels_00000.npy", labels)
    manifest = {"grid": [GRID, GRID], "vocab_size": VOCAB, "num_classes": CLASSES, "num_augmentations": AUGS,
                "count": ITEMS, "complete": True,
                "shards": [{"codes": "codes_00000.npy", "labels": "labels_00000.npy", "count": ITEMS}]}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


@pytest.fixture
def base_model(tiny):
    """A tiny base without dropout (so losses are exact), saved where asked."""

    def make(path: Path | None = None, seed: int = 0) -> GPT:
        model = tiny.gpt(seed, vocab=VOCAB, classes=CLASSES, tokens=GRID * GRID, token_dropout_p=0.0,
                         resid_dropout_p=0.0, ffn_dropout_p=0.0)
        if path is not None:
            save_model(path, model)
        return model

    return make


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_model(path).state_dict()


def assert_same_weights(a: dict, b: dict, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if atol:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol, msg=key)
        else:
            assert torch.equal(a[key], b[key]), key


def base_args(codes: Path, run: Path, steps: int, *extra: str) -> list[str]:
    return ["--codes", str(codes), "--run-dir", str(run), "--mode", "base", "--model", "GPT-toy-S",
            "--steps", str(steps), "--global-batch-size", "8", "--lr-base", "3e-3", "--log-every", "1",
            "--dropout", "0", "--device", "cpu", *extra]


def batch_loss(model, codes_dir: Path, step: int, seed: int, batch_size: int, drop_prob: float):
    """The loop's loss of `step`, recomputed from the (seed, step) batch: (loss, per-slot losses)."""
    codes, labels, _ = load_codes(codes_dir)
    items, aug, drop = global_batch(step, seed, batch_size, len(codes), codes.shape[1], drop_prob)
    y = torch.where(drop, CLASSES, labels[items])  # the null class of CFG
    with torch.no_grad():
        return model.eval().training_loss(codes[items, aug], {"labels": y})


# ------------------------------------------------------------------------------------------------
def test_global_batch_is_a_pure_epochwise_function_of_seed_and_step():
    n, b = 10, 4
    first = global_batch(3, 7, b, n, 5, 0.5)
    again = global_batch(3, 7, b, n, 5, 0.5)
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert not torch.equal(global_batch(3, 8, b, n, 5, 0.5)[0], first[0])  # the seed matters
    # Epoch by epoch without replacement: steps 0..4 cover 20 positions = two full passes over 10 items.
    stream = torch.cat([global_batch(s, 7, b, n, 5, 0.5)[0] for s in range(5)])
    assert sorted(stream[:n].tolist()) == list(range(n)) == sorted(stream[n:].tolist())
    assert not torch.equal(stream[:n], stream[n:])  # a new permutation each epoch
    aug, drop = torch.cat([global_batch(s, 7, 64, n, 5, 0.1)[1] for s in range(10)]), \
        torch.cat([global_batch(s, 7, 64, n, 5, 0.1)[2] for s in range(10)])
    assert set(aug.tolist()) == set(range(5))
    assert 0.03 < drop.float().mean() < 0.2


def test_base_mode_learns_and_writes_its_outputs(tmp_path):
    codes, run = write_codes(tmp_path / "codes"), tmp_path / "run"
    main(base_args(codes, run, 16, "--ckpt-every", "4", "--keep-steps", "4"))
    log = metrics(run)
    assert [r["step"] for r in log] == list(range(1, 17))
    assert log[-1]["loss"] < log[0]["loss"] - 0.3
    assert all(len(r["per_slot_loss"]) == 1 and r["tokens_per_s"] > 0 for r in log)
    # every 4 steps, step 4 kept by --keep-steps, the older others pruned down to the latest two
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == \
        ["step_0000004.pt", "step_0000012.pt", "step_0000016.pt"]
    model = load_model(run / "final.pt")
    assert isinstance(model, GPT) and model.config.vocab_size == VOCAB and model.config.block_size == GRID**2
    assert model.config.class_dropout_prob == 0.1  # the saved config keeps the preset's label drop
    config = json.loads((run / "train_config.json").read_text())
    assert config["args"]["mode"] == "base" and config["world_size"] == 1
    # Running the finished command again does nothing.
    mtime = (run / "final.pt").stat().st_mtime_ns
    main(base_args(codes, run, 16, "--ckpt-every", "4", "--keep-steps", "4"))
    assert (run / "final.pt").stat().st_mtime_ns == mtime and len(metrics(run)) == 16


def test_truncated_checkpoint_is_skipped_and_resume_is_exact(tmp_path):
    codes = write_codes(tmp_path / "codes")
    main(base_args(codes, tmp_path / "straight", 6, "--ckpt-every", "2", "--ema-decay", "0.9"))
    run = tmp_path / "cut"
    main(base_args(codes, run, 4, "--ckpt-every", "2", "--ema-decay", "0.9"))
    (run / "final.pt").unlink()
    newest = run / "checkpoints" / "step_0000004.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a partial write / copy
    main(base_args(codes, run, 6, "--ckpt-every", "2", "--ema-decay", "0.9"))
    text = (run / "train.log").read_text()
    assert "ignoring incomplete or corrupt checkpoint" in text and "step_0000004.pt" in text
    assert "resuming from" in text and "step_0000002.pt at step 2" in text
    assert [r["step"] for r in metrics(run)] == list(range(1, 7))
    assert [r["loss"] for r in metrics(run)] == [r["loss"] for r in metrics(tmp_path / "straight")]
    assert_same_weights(weights(run / "final.pt"), weights(tmp_path / "straight" / "final.pt"))
    ema = load_model(run / "final.pt", use_ema=True).state_dict()
    assert_same_weights(ema, load_model(tmp_path / "straight" / "final.pt", use_ema=True).state_dict())


def test_changed_settings_start_fresh_instead_of_resuming(tmp_path):
    """Snakemake reruns a job whose params changed after deleting its declared outputs (final.pt,
    metrics.jsonl); the old run's checkpoints must not be resumed under the new settings."""
    codes, run = write_codes(tmp_path / "codes"), tmp_path / "run"
    main(base_args(codes, run, 4, "--ckpt-every", "2"))
    (run / "final.pt").unlink()
    (run / "metrics.jsonl").unlink()
    main(base_args(codes, run, 4, "--ckpt-every", "2", "--lr-base", "1e-3"))
    main(base_args(codes, tmp_path / "fresh", 4, "--ckpt-every", "2", "--lr-base", "1e-3"))
    assert "starting fresh" in (run / "train.log").read_text() and "lr_base" in (run / "train.log").read_text()
    assert [r["loss"] for r in metrics(run)] == [r["loss"] for r in metrics(tmp_path / "fresh")]
    assert_same_weights(weights(run / "final.pt"), weights(tmp_path / "fresh" / "final.pt"))


def test_rerun_keeps_the_loss_history_snakemake_deleted(tmp_path):
    codes, run = write_codes(tmp_path / "codes"), tmp_path / "run"
    main(base_args(codes, run, 4, "--ckpt-every", "2"))
    (run / "final.pt").unlink()
    (run / "metrics.jsonl").unlink()  # --rerun-incomplete / --retries delete declared outputs first
    main(base_args(codes, run, 6, "--ckpt-every", "2"))
    assert "resuming from" in (run / "train.log").read_text()
    assert [r["step"] for r in metrics(run)] == list(range(1, 7))


def test_fewer_steps_than_an_existing_run_gives_exactly_that_many(tmp_path):
    codes, run = write_codes(tmp_path / "codes"), tmp_path / "run"
    main(base_args(codes, run, 6, "--ckpt-every", "2", "--keep-steps", "4"))
    main(base_args(codes, tmp_path / "four", 4, "--ckpt-every", "2"))
    main(base_args(codes, run, 4, "--ckpt-every", "2", "--keep-steps", "4"))
    assert load_model(run / "final.pt") is not None
    assert_same_weights(weights(run / "final.pt"), weights(tmp_path / "four" / "final.pt"))
    assert [r["step"] for r in metrics(run)] == [1, 2, 3, 4]


def test_a_retrained_base_at_the_same_path_restarts_the_finetune(base_model, tmp_path):
    codes = write_codes(tmp_path / "codes")
    args = lambda run: ["--codes", str(codes), "--run-dir", str(tmp_path / run), "--mode", "finetune",  # noqa: E731
                        "--init", str(tmp_path / "base.pt"), "--steps", "2", "--global-batch-size", "8",
                        "--log-every", "1", "--device", "cpu"]
    base_model(tmp_path / "base.pt", seed=0)
    main(args("run"))
    (tmp_path / "run" / "final.pt").unlink()
    base_model(tmp_path / "base.pt", seed=1)  # retrained: same path, other weights
    main(args("run"))
    main(args("fresh"))
    assert_same_weights(weights(tmp_path / "run" / "final.pt"), weights(tmp_path / "fresh" / "final.pt"))


def test_second_trainer_in_a_run_dir_fails_fast_and_stale_temp_files_go(tmp_path):
    from tensorar.fileio import FolderLocked, exclusive_lock

    codes, run = write_codes(tmp_path / "codes"), tmp_path / "run"
    with exclusive_lock(run, "training job"), pytest.raises(FolderLocked, match="in use by another training job"):
        main(base_args(codes, run, 2))
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    stale = run / "checkpoints" / ".step_0000002.pt.abc.tmp"
    stale.write_bytes(b"x" * 1000)
    main(base_args(codes, run, 2))
    assert not stale.exists() and (run / "final.pt").is_file()


def test_init_of_another_architecture_than_model_is_refused(base_model, tmp_path):
    codes = write_codes(tmp_path / "codes")
    base_model(tmp_path / "base.pt")  # dim 32, 2 layers: not GPT-toy-S
    with pytest.raises(SystemExit, match="not a GPT-toy-S model"):
        main(["--codes", str(codes), "--run-dir", str(tmp_path / "r"), "--mode", "finetune", "--model", "GPT-toy-S",
              "--init", str(tmp_path / "base.pt"), "--steps", "1", "--global-batch-size", "8", "--device", "cpu"])


def test_finetune_starts_from_the_base_weights(base_model, tmp_path):
    codes = write_codes(tmp_path / "codes")
    base = base_model(tmp_path / "base.pt")
    run = tmp_path / "ft"
    main(["--codes", str(codes), "--run-dir", str(run), "--mode", "finetune", "--init", str(tmp_path / "base.pt"),
          "--steps", "2", "--global-batch-size", "8", "--log-every", "1", "--seed", "3", "--device", "cpu"])
    expected, _ = batch_loss(base, codes, step=0, seed=3, batch_size=8, drop_prob=0.1)
    assert metrics(run)[0]["loss"] == pytest.approx(expected.item(), rel=1e-5)
    trained = load_model(run / "final.pt")
    assert isinstance(trained, GPT) and trained.config == base.config
    assert not torch.equal(trained.output.weight, base.output.weight)  # it trained (lr-base 1e-5)

    # An official LlamaGen-layout file (a bare {"model": sd}, no config) with --init-preset; lr 0 keeps it.
    torch.manual_seed(1)
    official = GPT(GPTConfig(n_layer=3, n_head=4, dim=64, multiple_of=32, vocab_size=VOCAB, num_classes=CLASSES,
                             block_size=GRID * GRID))
    torch.save({"model": official.state_dict()}, tmp_path / "c2i_toy.pt")
    main(["--codes", str(codes), "--run-dir", str(tmp_path / "ft_official"), "--mode", "finetune",
          "--init", str(tmp_path / "c2i_toy.pt"), "--init-preset", "GPT-toy-S", "--lr-base", "0",
          "--steps", "2", "--global-batch-size", "8", "--device", "cpu"])
    assert_same_weights(weights(tmp_path / "ft_official" / "final.pt"), official.state_dict())


def test_tensorar_mode_trains_the_plugin_and_reloads_as_tensorar(base_model, tmp_path):
    codes = write_codes(tmp_path / "codes")
    base = base_model(tmp_path / "base.pt")
    run = tmp_path / "tar"
    main(["--codes", str(codes), "--run-dir", str(run), "--mode", "tensorar", "--init", str(tmp_path / "base.pt"),
          "--k", "4", "--depth", "1", "--lr-base", "0", "--lr-plugin", "1e-2", "--ema-decay", "0.5",
          "--steps", "1", "--global-batch-size", "8", "--log-every", "1", "--device", "cpu"])
    model = load_model(run / "final.pt")
    assert isinstance(model, TensorAR) and model.plugin_config.k == 4
    first = metrics(run)[0]
    assert len(first["per_slot_loss"]) == 4 and first["lr_plugin"] == 1e-2
    # The plug-in starts as the identity, so slot 0 of the first step is the base model's loss.
    expected, _ = batch_loss(base, codes, step=0, seed=0, batch_size=8, drop_prob=0.1)
    assert first["per_slot_loss"][0] == pytest.approx(expected.item(), rel=1e-5)
    assert_same_weights(model.base.state_dict(), base.state_dict())  # --lr-base 0: the base is untouched
    assert not torch.equal(model.q_out.mlp[-1].weight, torch.zeros_like(model.q_out.mlp[-1].weight))
    # EMA after one step with decay 0.5: the midpoint of the initial and the trained weights.
    ema = load_model(run / "final.pt", use_ema=True)
    torch.testing.assert_close(ema.q_out.mlp[-1].weight, 0.5 * model.q_out.mlp[-1].weight)


def test_non_finite_loss_stops_before_the_update(tmp_path, monkeypatch):
    codes, run = write_codes(tmp_path / "codes"), tmp_path / "run"
    real = GPT.training_loss
    monkeypatch.setattr(GPT, "training_loss", lambda self, t, c, **kw: tuple(x * float("nan") for x in real(self, t, c)))
    with pytest.raises(SystemExit, match="non-finite loss"):
        main(base_args(codes, run, 3))
    assert not (run / "final.pt").exists()


# ------------------------------------------------------------------------------------------------
# Multi-process and signal tests: real subprocesses
# ------------------------------------------------------------------------------------------------
def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_tensorar_noise_is_drawn_per_global_sample(base_model):
    """Like the data order, the input noise is a pure function of (seed, step) over the global batch,
    so two ranks' halves give the loss one process gets (DDP averages the per-rank losses)."""
    noise = global_noise(3, 7, 8, GRID * GRID, 4)
    assert noise.shape == (8, GRID * GRID - 1, 4, 2)
    assert torch.equal(noise, global_noise(3, 7, 8, GRID * GRID, 4))
    assert not torch.equal(noise, global_noise(4, 7, 8, GRID * GRID, 4))
    torch.manual_seed(0)
    model = TensorAR(base_model(), TensorARConfig(k=4, schedule="linear"))
    torch.nn.init.normal_(model.q_in.mlp[-1].weight, std=0.5)  # at init the encoder ignores the noise
    tokens, labels = torch.randint(0, VOCAB, (8, GRID * GRID)), torch.randint(0, CLASSES, (8,))
    one = model.training_loss(tokens, {"labels": labels}, noise_uniforms=noise)[0]
    halves = [model.training_loss(tokens[r], {"labels": labels[r]}, noise_uniforms=noise[r])[0]
              for r in (slice(0, 4), slice(4, 8))]
    torch.testing.assert_close(sum(halves) / 2, one)
    other = model.training_loss(tokens, {"labels": labels}, noise_uniforms=global_noise(4, 7, 8, GRID * GRID, 4))[0]
    assert not torch.allclose(other, one)  # the noise does reach the loss


@pytest.mark.slow
def test_two_processes_train_like_one_with_the_same_global_batch(tmp_path):
    codes = write_codes(tmp_path / "codes")
    args = lambda run: base_args(codes, tmp_path / run, 4, "--global-batch-size", "8")  # noqa: E731
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    subprocess.run([*torchrun, "-m", "tensorar.train", *args("two")], check=True, env=_env(), timeout=120)
    subprocess.run([sys.executable, "-m", "tensorar.train", *args("one")], check=True, env=_env(), timeout=120)
    assert json.loads((tmp_path / "two" / "train_config.json").read_text())["world_size"] == 2
    one, two = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert [r["step"] for r in two] == [1, 2, 3, 4]
    np.testing.assert_allclose([r["loss"] for r in two], [r["loss"] for r in one], rtol=1e-5)
    assert_same_weights(weights(tmp_path / "two" / "final.pt"), weights(tmp_path / "one" / "final.pt"), atol=1e-5)


@pytest.mark.slow
def test_sigterm_checkpoints_and_the_resumed_run_matches_an_uninterrupted_one(base_model, tmp_path):
    codes = write_codes(tmp_path / "codes")
    base_model(tmp_path / "base.pt")
    steps = 100
    cmd = lambda run: [sys.executable, "-m", "tensorar.train", "--codes", str(codes),  # noqa: E731
                       "--run-dir", str(tmp_path / run), "--mode", "finetune", "--init", str(tmp_path / "base.pt"),
                       "--lr-base", "1e-3", "--steps", str(steps), "--global-batch-size", "8",
                       "--ckpt-every", "5", "--log-every", "1", "--device", "cpu"]
    subprocess.run(cmd("straight"), check=True, env=_env(), timeout=300)

    run = tmp_path / "preempted"
    proc = subprocess.Popen(cmd("preempted"), env=_env(), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "checkpoints" / "step_0000005.pt").exists():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "preempted by SIGTERM" in err and not (run / "final.pt").exists()
    stopped_at = max(r["step"] for r in metrics(run))
    assert 5 <= stopped_at < steps
    assert (run / "checkpoints" / f"step_{stopped_at:07d}.pt").is_file()

    resumed = subprocess.run(cmd("preempted"), env=_env(), stderr=subprocess.PIPE, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"at step {stopped_at}" in resumed.stderr
    assert [r["step"] for r in metrics(run)] == list(range(1, steps + 1))
    assert [r["loss"] for r in metrics(run)] == [r["loss"] for r in metrics(tmp_path / "straight")]
    assert_same_weights(weights(run / "final.pt"), weights(tmp_path / "straight" / "final.pt"))


def test_self_drafting_trains_and_is_saved_in_the_checkpoint(base_model, tmp_path):
    codes = write_codes(tmp_path / "codes")
    base_model(tmp_path / "base.pt")
    runs = {}
    for source in ("noise", "self"):
        runs[source] = tmp_path / source
        main(["--codes", str(codes), "--run-dir", str(runs[source]), "--mode", "tensorar",
              "--init", str(tmp_path / "base.pt"), "--k", "4", "--depth", "1", "--draft-source", source,
              "--steps", "2", "--global-batch-size", "8", "--log-every", "1", "--device", "cpu"])
    model = load_model(runs["self"] / "final.pt")
    assert model.plugin_config.draft_source == "self"
    # Same seed and batches, different drafts: the later slots see other inputs, so their losses differ.
    noise_losses, self_losses = (metrics(runs[s])[-1]["per_slot_loss"] for s in ("noise", "self"))
    assert noise_losses[1:] != self_losses[1:]


def test_zero_steps_is_rejected_naming_the_flag(tmp_path, capsys):
    codes = write_codes(tmp_path / "codes")
    with pytest.raises(SystemExit):
        main(base_args(codes, tmp_path / "run", 0))
    assert "--steps" in capsys.readouterr().err and not (tmp_path / "run" / "final.pt").exists()


def test_metrics_deleted_under_a_live_trainer_are_whole_at_the_end_and_on_every_rerun(tmp_path):
    """Snakemake, killed alone, leaves its training job running and deletes that job's metrics.jsonl on the
    rerun it refuses; the trainer then appends to a new file. The end of the run writes the whole history,
    and a rerun that finds the run complete rewrites it from final.pt."""
    codes, run, steps = write_codes(tmp_path / "codes"), tmp_path / "run", 60
    proc = subprocess.Popen([sys.executable, "-m", "tensorar.train", *base_args(codes, run, steps)], env=_env(),
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not ((run / "metrics.jsonl").is_file() and len((run / "metrics.jsonl").read_text().splitlines()) >= 5):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.01)
    (run / "metrics.jsonl").unlink()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert [r["step"] for r in metrics(run)] == list(range(1, steps + 1))
    (run / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text().splitlines()[0][:20])  # cut short
    main(base_args(codes, run, steps))
    assert "nothing to do" in (run / "train.log").read_text()
    assert [r["step"] for r in metrics(run)] == list(range(1, steps + 1))
