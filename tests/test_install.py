"""Installed means working: the wheel carries the prompts, the gold set, the example flows and the
embedded corpus, and runs from a directory that is not the repository.

The wheel is built from this checkout and installed into a fresh venv outside the repository; that venv
reaches the test venv's dependencies (torch, Beam, ... several GB) through a .pth line, but not this
checkout: the `pipeline` it imports is the installed one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.fakes.openai_server import FakeOpenAIServer
from tests.house import REPO


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("install")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(root / "dist"), str(REPO)], check=True, capture_output=True, text=True, timeout=600)
    wheel = next((root / "dist").glob("pmc_curate-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3.*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # the test venv's packages, last
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, text=True, timeout=600)
    return venv


def _run(venv: Path, cwd: Path, *argv: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(venv / "bin" / "python"), "-m", "pipeline.cli", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_the_installed_wheel_finds_its_prompts_and_examples(installed: Path, tmp_path: Path) -> None:
    code = "import pipeline, pipeline.core.bundled as b; print(pipeline.__file__); print(b.PROMPTS, b.EXAMPLES)"
    out = subprocess.run([str(installed / "bin" / "python"), "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout
    assert str(REPO) not in out and str(installed) in out  # the installed copy, not this checkout
    work = tmp_path / "w"
    examples = next(installed.glob("lib/python3.*/site-packages/pipeline/_bundled/examples/jats"))
    assert len(list(examples.glob("*.*ml"))) == 10
    assert _run(installed, tmp_path, "parse", str(examples), "--workdir", str(work)).returncode == 0
    assert _run(installed, tmp_path, "sample", "--workdir", str(work), "--size", "5").returncode == 0
    with FakeOpenAIServer() as server:
        r = _run(installed, tmp_path, "annotate", "--workdir", str(work), "--base-url", server.url, "--model", "m",
                 "--dry-run")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "prompt biomed-labels/v1" in r.stdout and "5 paragraphs" in r.stdout


@pytest.mark.slow
def test_the_demo_runs_from_an_installed_wheel_outside_the_repository(installed: Path, tmp_path: Path) -> None:
    r = _run(installed, tmp_path, "demo", "--workdir", "demo-work", timeout=1500)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    work = tmp_path / "demo-work"
    assert (work / "reports" / "index.md").is_file() and (work / "subsets" / "be-base" / "manifest.json").is_file()
    import pyarrow.parquet as pq

    assert pq.read_table(work / "articles").num_rows == 10
