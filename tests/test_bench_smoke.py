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
