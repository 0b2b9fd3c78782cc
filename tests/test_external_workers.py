"""Stages on Beam workers in other processes, as on Flink or Dataflow: Beam's own SDK worker pool
(tests/worker_pool.py) in a fresh cwd with an environment that holds only the storage settings.

What this catches that LOOPBACK and the DirectRunner cannot: a relative input path, a setting that
only the launcher's environment has, a file the launcher wrote to its local disk, a DoFn that is not
importable on a worker.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest

from pipeline import cli
from pipeline.core import storage
from pipeline.core.storage import Location
from tests.conftest import EXAMPLES
from tests.worker_pool import worker_pool

JATS = EXAMPLES / "jats"
MARKER = "PMC_CURATE_LAUNCHER_ONLY_MARKER"
# What the boot program adds for sdk_worker_main (tests/worker_pool.py: boot), and what a shell adds.
WORKER_ENV = {"WORKER_ID", "PIPELINE_OPTIONS", "SEMI_PERSISTENT_DIRECTORY", "LOGGING_API_SERVICE_DESCRIPTOR",
              "CONTROL_API_SERVICE_DESCRIPTOR", "STATUS_API_SERVICE_DESCRIPTOR", "RUNNER_CAPABILITIES",
              "PWD", "SHLVL", "_", "LC_CTYPE"}
TABLES = {"articles": "articles/*.parquet", "paragraphs": "paragraphs/*.parquet", "rejects": "rejects/parse-*.parquet"}


def _workers_started(pool: Any) -> int:
    return pool.log_tail(10**9).count("Starting worker with command")


def read_rows(workdir: str, input_prefix: str) -> dict[str, list[dict[str, Any]]]:
    """Every table's rows, sorted, with the input location in `source` replaced by `<in>`."""
    con = storage.duckdb_connect()
    try:
        out = {}
        for name, pattern in TABLES.items():
            rows = con.sql("SELECT * FROM read_parquet($g)", params={"g": f"{workdir}/{pattern}"}).to_arrow_table().to_pylist()
            for r in rows:
                if isinstance(r.get("source"), str):
                    r["source"] = r["source"].replace(input_prefix, "<in>")
            out[name] = sorted(rows, key=repr)
        return out
    finally:
        con.close()


@pytest.fixture(scope="module")
def local_rows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """The reference: the same inputs parsed into a local work directory by the in-process DirectRunner."""
    work = tmp_path_factory.mktemp("local") / "w"
    assert cli.main(["parse", str(JATS), "--workdir", str(work), "--runner=DirectRunner"]) == 0
    rows = read_rows(str(work), str(JATS))
    assert len(rows["articles"]) >= 9 and len(rows["paragraphs"]) >= 10, {k: len(v) for k, v in rows.items()}
    return rows


def test_dofns_run_in_the_pool_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(MARKER, "1")  # the launcher has it when the pool starts; the pool must not inherit it
    out = tmp_path / "probe"

    # A nested function: cloudpickle sends it by value (`tests` is not installed on the workers; a
    # worker image has only `pip install .`).
    def where(_: int) -> str:
        import json
        import os

        from apache_beam.io.filesystems import FileSystems

        opts = FileSystems._pipeline_options  # what Beam's filesystems (S3, GCS) are built with on this worker
        return json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(), "env": sorted(os.environ),
                           "job_name": opts.get_all_options().get("job_name") if opts else None})

    with worker_pool({"AWS_DEFAULT_REGION": "us-east-1"}) as pool:
        with beam.Pipeline(argv=[*pool.beam_args(), "--job_name=probe-job"]) as p:
            _ = p | beam.Create(range(4)) | beam.Map(where) | beam.io.WriteToText(str(out), num_shards=1)
        started = _workers_started(pool)
        seen = [json.loads(line) for f in tmp_path.glob("probe*") for line in f.read_text().splitlines()]
        assert len(seen) == 4
        for s in seen:
            assert s["pid"] != os.getpid() and s["pid"] != pool.pid
            assert s["ppid"] == pool.pid, "the worker is a child of the pool, not of the launcher"
            assert s["job_name"] == "probe-job", "the worker did not get the pipeline options"
            assert Path(s["cwd"]).resolve() == pool.cwd.resolve() != Path.cwd().resolve()
            assert MARKER not in s["env"] and MARKER in os.environ
            assert set(s["env"]) <= set(pool.env) | WORKER_ENV, set(s["env"]) - set(pool.env)
            assert "AWS_DEFAULT_REGION" in s["env"]  # what was passed explicitly does reach the workers
        assert started >= 1


def test_bare_pool_workers_get_no_pipeline_options(tmp_path: Path):
    """Why tests/worker_pool.py starts workers through its boot(): the pool's own `python -c SdkHarness`
    workers never receive the pipeline options, so Beam's S3/GCS filesystems there have no settings
    (the S3 sink fails with "Must provide one of client or options"). Beam's container boots workers
    with the options; if a Beam release changes this, boot() may no longer be needed."""
    def seen(_: int) -> str:
        from apache_beam.io.filesystems import FileSystems

        return repr(FileSystems._pipeline_options)

    with worker_pool(boot=False) as pool, beam.Pipeline(argv=[*pool.beam_args(), "--job_name=probe-job"]) as p:
        _ = p | beam.Create([0]) | beam.Map(seen) | beam.io.WriteToText(str(tmp_path / "bare"), num_shards=1)
    assert [f.read_text().strip() for f in tmp_path.glob("bare*")] == ["None"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_parse_into_s3_on_external_workers(local_rows, s3_worker_pool, s3_workdir: str, s3_server):
    # Inputs uploaded to the bucket: the workers need nothing from the launcher's disk.
    bucket_inputs = Location(s3_workdir).parent / "inputs"
    bucket_inputs.upload_from(JATS)
    before = _workers_started(s3_worker_pool)
    rc = cli.main(["parse", f"{bucket_inputs}/", "--workdir", s3_workdir, *s3_worker_pool.beam_args()])
    assert rc == 0, s3_worker_pool.log_tail()
    assert _workers_started(s3_worker_pool) > before, "the stage did not run on the pool"
    assert read_rows(s3_workdir, str(bucket_inputs)) == local_rows
    assert Location(f"{s3_workdir}/_stages/parse.json").exists()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_parse_local_inputs_into_s3_on_external_workers(local_rows, s3_worker_pool, s3_workdir: str,
                                                       monkeypatch: pytest.MonkeyPatch):
    # A relative input path, given from the repo's examples/ folder: the pool's cwd is elsewhere, so it
    # only works when the launcher hands the workers absolute paths.
    monkeypatch.chdir(EXAMPLES)
    rc = cli.main(["parse", "jats", "--workdir", s3_workdir, *s3_worker_pool.beam_args()])
    assert rc == 0, s3_worker_pool.log_tail()
    assert read_rows(s3_workdir, str(JATS)) == local_rows


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_parse_into_gcs_on_external_workers(local_rows, gcs_worker_pool, gcs_workdir: str):
    bucket_inputs = Location(gcs_workdir).parent / "inputs"
    bucket_inputs.upload_from(JATS)
    rc = cli.main(["parse", f"{bucket_inputs}/", "--workdir", gcs_workdir, "--no_auth", *gcs_worker_pool.beam_args()])
    assert rc == 0, gcs_worker_pool.log_tail()
    assert read_rows(gcs_workdir, str(bucket_inputs)) == local_rows
