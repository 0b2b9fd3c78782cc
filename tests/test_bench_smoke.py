"""Every benchmark of bench/ still runs: `bench/run_all.py --smoke` (tiny sizes; the numbers mean nothing).

A schema change or a renamed function that breaks a benchmark fails here, not months later when someone
needs its figures.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.house import REPO


@pytest.mark.slow
def test_every_benchmark_runs_at_smoke_size() -> None:
    r = subprocess.run([sys.executable, str(REPO / "bench" / "run_all.py"), "--smoke"], cwd=REPO,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert r.stdout.count(": exit 0 in") == r.stdout.count("== ") // 2


def test_gpu_benchmark_says_clearly_when_there_is_no_cuda() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    r = subprocess.run([sys.executable, str(REPO / "bench" / "bench_propagate.py"), "--gpu"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert "needs a CUDA device" in r.stderr and "--encoder tiny-xlmr" in r.stderr


@pytest.mark.slow
@pytest.mark.shared_data
def test_gpu_benchmark_argument_path_runs_on_cpu_with_a_tiny_encoder() -> None:
    """--gpu's code path (XLM-R config, token-budget sub-batches, the tokenizer timed alone) on a tiny config."""
    r = subprocess.run([sys.executable, str(REPO / "bench" / "bench_propagate.py"), "--gpu", "--device", "cpu",
                        "--encoder", "tiny-xlmr", "--precision", "fp32", "--limit", "12", "--repeat-texts", "2",
                        "--max-length", "128", "--max-tokens", "1024"],
                       cwd=REPO, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "tokenize" in r.stdout and "ours" in r.stdout
    assert "sub-batches of at most 1024 tokens" in r.stdout
