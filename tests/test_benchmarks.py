"""The benchmark scripts run end to end on a toy preset and report what they promise (no timing asserted)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_script(name: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def sampling_args(tmp_path) -> list[str]:
    return ["--preset", "GPT-toy-S", "--batch-size", "2", "--tokens", "6", "--threads", "1", "--warmup", "0",
            "--repeats", "1", "--tokenizer-preset", "VQ-toy", "--out", str(tmp_path / "b.json")]


def test_sampling_benchmark_reports_every_number(tmp_path):
    stdout = run_script("sampling.py", *sampling_args(tmp_path))
    result = json.loads((tmp_path / "b.json").read_text())
    names = [row["sampler"] for row in result["rows"]]
    assert names == ["ours: base", "ours: TensorAR (k=4, d=1)", "ours: base, torch.multinomial draws",
                     "tokenizer decode (VQ-toy)"]
    assert all(row["seconds"] > 0 for row in result["rows"])
    # TensorAR adds the k-slot head and the query transformers: more FLOPs per step than its base.
    assert result["flops_per_step"]["tensorar"] > result["flops_per_step"]["base"] > 0
    assert result["weight_packing_seconds"] >= 0 and "weight packing" in stdout
    assert "TensorAR / base throughput" in stdout and "| ours: base" in stdout


@pytest.mark.slow
def test_sampling_benchmark_compiled_steps_give_the_eager_tokens(tmp_path):
    run_script("sampling.py", *sampling_args(tmp_path), "--compile")
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["compiled_greedy_equals_eager"] == {"base": True, "tensorar": True}
    names = [row["sampler"] for row in result["rows"]]
    assert {"ours: base, compiled step", "ours: base, compiled step, torch.multinomial draws"} <= set(names)


def test_decode_matmul_benchmark(tmp_path):
    stdout = run_script("decode_matmul.py", "--preset", "GPT-toy-S", "--threads", "1", "--rows", "2", "16",
                        "--repeats", "1", "--out", str(tmp_path / "m.json"))
    result = json.loads((tmp_path / "m.json").read_text())
    assert set(result["rows"]) == {"2", "16"}
    assert set(result["rows"]["2"]) == {"F.linear", "oneDNN packed", "W @ x.T", "chunked bmm"}
    assert result["weight_gb"] > 0 and "GB/s" in stdout


def test_training_benchmark_counts_what_the_step_runs(tmp_path):
    stdout = run_script("training.py", "--preset", "GPT-toy-S", "--tokens", "16", "--batch-size", "2", "--k", "1", "2",
                        "4", "--threads", "1", "--warmup", "0", "--repeats", "1", "--out", str(tmp_path / "t.json"))
    result = json.loads((tmp_path / "t.json").read_text())
    rows = {row["model"]: row for row in result["rows"]}
    assert list(rows) == ["base", "control (finetune)", "TensorAR (k=1, d=1)", "TensorAR (k=2, d=1)",
                          "TensorAR (k=4, d=1)"]
    # The analytic multiply-add count equals torch's flop counter on a real forward + backward of every
    # model, the checkpointed slot heads' recomputation included (on CPU the counter sees no attention).
    for row in rows.values():
        assert row["predicted_matmul_macs_per_step"] == row["counted_matmul_macs_per_step"] > 0
        assert row["ms"]["min"] > 0 and row["fastest_step_ms"]["optimizer"] > 0
    # Control is the base's computation; k = 1 is the base plus the query transformers and the head's
    # recomputation; the predicted cost grows with k.
    assert rows["control (finetune)"]["macs_per_step"] == rows["base"]["macs_per_step"]
    k1 = rows["TensorAR (k=1, d=1)"]["macs_per_image"]
    base = rows["base"]["macs_per_image"]
    assert k1["step"] - base["step"] == 3 * (k1["m_enc"] + k1["m_dec"]) + base["head"]
    ratios = [rows[f"TensorAR (k={k}, d=1)"]["predicted_ratio"] for k in (1, 2, 4)]
    assert 1 < ratios[0] < ratios[1] < ratios[2]
    assert "| TensorAR (k=4, d=1) |" in stdout and "predicted (MACs)" in stdout
