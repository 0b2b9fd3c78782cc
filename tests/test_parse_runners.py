"""The parse transform gives the same rows on every runner: in-process DirectRunner, DirectRunner
multi_processing (2 workers) and the portable Fn API path (PortableRunner, embedded job server, LOOPBACK)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_runners.options import pipeline_options
from pipeline.core.workdir import Workdir
from pipeline.stages.parse.transforms import (
    OUT_ARTICLES,
    OUT_PARAGRAPHS,
    OUT_REJECTS,
    ParseArticles,
    WriteParseOutputs,
)
from tests.parse_inputs import build_inputs

RUNNERS = {
    "multi_processing": ["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"],
    "portable_loopback": ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"],
}


@pytest.fixture(scope="module")
def inputs_and_expected(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("runners")
    paths = build_inputs(root / "in")
    inputs = [str(paths["xml"] / n) for n in ("inline.xml", "wrapped_noprefix.nxml", "nobody.xml", "truncated.xml")]
    inputs.append(str(paths["good_tar"]))
    work = Workdir.of(root / "w")
    # The in-process reference: the default (in-process) DirectRunner, written to Parquet and read back.
    with BeamTestPipeline(options=pipeline_options(["--runner=DirectRunner"])) as p:
        _ = p | ParseArticles(inputs, min_tokens=0) | WriteParseOutputs(work, 0)
    con = duckdb.connect()
    expected = {}
    for name, glob in ((OUT_ARTICLES, work.glob("articles")), (OUT_PARAGRAPHS, work.glob("paragraphs")),
                       (OUT_REJECTS, str(work.rejects / "parse-*.parquet"))):
        expected[name] = con.sql("SELECT * FROM read_parquet($g)", params={"g": glob}).to_arrow_table().to_pylist()
    assert len(expected[OUT_ARTICLES]) == 4 and len(expected[OUT_PARAGRAPHS]) >= 13 and len(expected[OUT_REJECTS]) == 3
    return inputs, expected


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("runner", sorted(RUNNERS))
def test_same_rows_on_every_runner(inputs_and_expected, runner: str, tmp_path: Path):
    inputs, expected = inputs_and_expected
    with BeamTestPipeline(options=pipeline_options(RUNNERS[runner])) as p:
        out = p | ParseArticles(inputs, min_tokens=0)
        for name in (OUT_ARTICLES, OUT_PARAGRAPHS, OUT_REJECTS):
            assert_that(out[name], equal_to(expected[name]), label=f"Check{name.title()}")
