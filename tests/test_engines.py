"""Every Beam stage on a real engine gives the in-process runner's rows: sorted rows of every table equal,
rejects included (same reasons, same counts).

The engines are the ones `make install` puts in .cache/engines/ (beam_runners/engines.py); without one,
its tests skip saying what is missing. Stages run through the CLI, as a user runs them, with
`--preset prism` / `--preset flink-local`, against the same inputs as an in-process run:
parse (loose files with bad ones, .tar.gz packages with a damaged one, the PMC Cloud layout), annotate
(a fake OpenAI server over a real socket, with injected faults) and propagate (a tiny trained student).
Inputs are small: each engine run costs its start-up (Prism: a Go process and LOOPBACK workers).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest

from beam_runners import engines
from pipeline.cli import main as cli
from pipeline.core.workdir import Workdir
from pipeline.teacher.rules import sample_paragraphs, write_workdir
from tests.annotate_helpers import make_sample
from tests.conftest import EXAMPLES
from tests.fakes.openai_server import FakeOpenAIServer
from tests.parse_inputs import build_inputs
from tests.pmc_cloud_mirror import build_mirror

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.timeout(900)]

ENGINES = {
    "prism": (["--preset", "prism"], engines.missing_prism),
    "flink-local": (["--preset", "flink-local"], engines.missing_flink_job_server),
}
TABLES = ("articles", "paragraphs", "versions", "tombstones", "annotations", "labels", "rejects")
VOLATILE = {"latency_s"}  # wall time of a call: differs between any two runs
TRAIN = ["--max-length", "32", "--max-steps", "2", "--epochs", "1", "--batch-size", "8",
         "--validation-fraction", "0.3", "--seed", "3"]


@pytest.fixture(params=sorted(ENGINES), scope="module")
def engine(request: pytest.FixtureRequest) -> list[str]:
    argv, missing = ENGINES[request.param]
    why = missing()
    if why:
        pytest.skip(f"{request.param}: {why}")
    return argv


def _round(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 4)  # the student's scores: batches of another size may differ in the last bits
    if isinstance(v, list):
        return [_round(x) for x in v]
    return v


def tables(root: Path) -> dict[str, list[tuple]]:
    """Every table of W as sorted rows (columns sorted by name, wall-clock columns left out)."""
    out: dict[str, list[tuple]] = {}
    for name in TABLES:
        files = sorted(str(p) for p in (root / name).glob("*.parquet"))
        if not files:
            continue
        rows = duckdb.sql("SELECT * FROM read_parquet($f)", params={"f": files}).to_arrow_table().to_pylist()
        out[name] = sorted((tuple((k, _round(r[k])) for k in sorted(r) if k not in VOLATILE) for r in rows), key=repr)
    return out


def _same(reference: Path, other: Path) -> dict[str, list[tuple]]:
    want, got = tables(reference), tables(other)
    assert set(got) == set(want)
    for name in want:
        assert got[name] == want[name], f"table {name} differs"
    return want


@pytest.fixture(scope="module")
def parse_inputs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    paths = build_inputs(tmp_path_factory.mktemp("inputs"))
    return [str(paths["xml"]), str(paths["good_tar"]), str(paths["damaged_tar"])]


def test_parse_files_and_packages(engine: list[str], parse_inputs: list[str], tmp_path: Path) -> None:
    assert cli(["parse", *parse_inputs, "--workdir", str(tmp_path / "ref")]) == 0
    assert cli(["parse", *parse_inputs, "--workdir", str(tmp_path / "eng"), *engine]) == 0
    t = _same(tmp_path / "ref", tmp_path / "eng")
    assert len(t["rejects"]) >= 8 and len(t["articles"]) >= 5  # bad files and members are rejected, not lost


def test_parse_the_pmc_cloud_layout(engine: list[str], shared_sample: Path, tmp_path: Path) -> None:
    few = tmp_path / "sample"
    few.mkdir()
    for p in sorted(shared_sample.iterdir())[:14]:  # 14 articles: every special case of the mirror, small
        shutil.copy(p, few / p.name)
    mirror = build_mirror(few, tmp_path / "mirror" / "pmc-oa-opendata")
    assert cli(["parse", str(mirror.root), "--workdir", str(tmp_path / "ref")]) == 0
    assert cli(["parse", str(mirror.root), "--workdir", str(tmp_path / "eng"), *engine]) == 0
    t = _same(tmp_path / "ref", tmp_path / "eng")
    assert {r[0] for r in t["versions"]} and len(t["rejects"]) >= 5


def test_annotate(engine: list[str], tmp_path: Path) -> None:
    plan = {"r5xx": ["500", "ok"], "xschema": ["schema"] * 3, "xempty": ["empty"] * 3}
    keys = [*plan, *(f"p{i}" for i in range(6))]
    for name, extra in (("ref", []), ("eng", engine)):
        make_sample(tmp_path / name, keys)
        with FakeOpenAIServer(plan=plan) as server:
            assert cli(["annotate", "--workdir", str(tmp_path / name), "--base-url", server.url, "--model", "t",
                        "--backoff", "0.01", "--timeout", "2", "--no-progress", "--max-attempts", "3", *extra]) == 0
    t = _same(tmp_path / "ref", tmp_path / "eng")
    assert len(t["annotations"]) == 7 and len(t["rejects"]) == 2


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """W with the sample's paragraphs (one with no text: a reject) and a tiny trained student."""
    root = tmp_path_factory.mktemp("trained")
    ps = sample_paragraphs(EXAMPLES / "jats")
    write_workdir(Workdir.of(root), ps, ps[::2])
    assert cli(["train", "--workdir", str(root), *TRAIN]) == 0
    return root


def test_propagate(engine: list[str], trained: Path, tmp_path: Path) -> None:
    for name, extra in (("ref", []), ("eng", engine)):
        shutil.copytree(trained, tmp_path / name)
        assert cli(["propagate", "--workdir", str(tmp_path / name), "--batch-size", "4", "--beam-batch-size", "8",
                    "--full", *extra]) == 0
    t = _same(tmp_path / "ref", tmp_path / "eng")
    assert len(t["labels"]) == len(t["paragraphs"])
