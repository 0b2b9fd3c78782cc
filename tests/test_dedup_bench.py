"""The dedup benchmark's smoke mode runs, so the script cannot rot between full runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_bench_dedup_smoke(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PMC_CURATE_SHARED_DATA": str(tmp_path / "absent")}
    run = subprocess.run([sys.executable, str(REPO / "bench" / "bench_dedup.py"), "--smoke", "--json", str(out)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(out.read_text())
    for name in ("exact (normalise + BLAKE2b)", "near (5-gram hashes, rensa, band keys, sketch)",
                 "decontaminate, eval sets (PubMedQA labelled)", "minhash: numpy a*x+b (same 5-gram hashes)"):  # fmt: skip
        assert figures[name]["n"] > 0 and figures[name]["per_cpu_s"] > 0
    assert figures["index with PubMedQA artificial"]["entries"] > figures["index eval sets (PubMedQA labelled)"]["entries"]
    assert figures["shuffle"]["signature_bytes"] == 512
    assert "load" in run.stdout
