"""train -> evaluate -> propagate with the work directory (and the model) on s3:// and gs://.

Real object-store servers on 127.0.0.1 (tests.servers), the real Beam FileSystems and sinks, the real
student: the rows written from a remote work directory must be the ones written from a local one.
Paragraphs are the embedded sample (examples/jats, 58 paragraphs of 8 articles), labelled by the rule
teacher; the student trains a few steps at 32 tokens, so each run takes seconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.cli import main as cli
from pipeline.core import storage
from pipeline.core.records import Paragraph
from pipeline.core.storage import Location
from pipeline.core.storage import ops as storage_ops
from pipeline.core.workdir import Workdir
from pipeline.stages.propagate.config import PropagateConfig
from pipeline.stages.propagate.stage import run_propagate
from pipeline.stages.propagate.transforms import StudentModelHandler
from pipeline.teacher.rules import sample_paragraphs, write_workdir
from tests.conftest import EXAMPLES

TRAIN = ["--max-length", "32", "--max-steps", "4", "--epochs", "1", "--batch-size", "8",
         "--validation-fraction", "0.3", "--seed", "3"]
PROPAGATE = ["--batch-size", "4", "--beam-batch-size", "8"]  # several Beam batches over 58 paragraphs
MODEL_FILES = {"config.json", "model.safetensors", "heads.safetensors", "label_schema.json",
               "training_config.json", "metrics.json", "tokenizer.json", "tokenizer_config.json"}


@pytest.fixture(scope="module")
def paragraphs() -> list[Paragraph]:
    ps = sample_paragraphs(EXAMPLES / "jats")
    assert 40 <= len(ps) <= 80 and len({p.article_id for p in ps}) >= 4
    return ps


def _flow(root: str, paragraphs: list[Paragraph], beam_argv: list[str], out: str = "") -> Workdir:
    """The three stages through the CLI, as a user runs them (--out: the model elsewhere than W/model)."""
    w = Workdir.of(root)
    write_workdir(w, paragraphs, paragraphs[::2])
    model = ["--model-dir", out] if out else []
    assert cli(["train", "--workdir", root, *TRAIN, *model]) == 0
    model = ["--model-dir", out] if out else []
    assert cli(["evaluate", "--workdir", root, *model]) == 0
    assert cli(["propagate", "--workdir", root, *PROPAGATE, *model, *beam_argv]) == 0
    return w


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory, paragraphs: list[Paragraph]) -> Workdir:
    return _flow(str(tmp_path_factory.mktemp("local")), paragraphs, [])


def _labels(w: Workdir) -> list[tuple[Any, ...]]:
    con = storage.duckdb_connect()
    try:
        return con.sql(
            "SELECT id, article_id, document_type, domain, model_id, truncated, input_hash, educational_score, "
            "document_type_scores, domain_scores FROM read_parquet($g) ORDER BY id", params={"g": w.glob("labels")},
        ).fetchall()
    finally:
        con.close()


def _assert_same_labels(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> None:
    assert [r[:7] for r in a] == [r[:7] for r in b]
    np.testing.assert_allclose([r[7] for r in a], [r[7] for r in b], atol=1e-4)
    for col in (8, 9):
        np.testing.assert_allclose([r[col] for r in a], [r[col] for r in b], atol=1e-5)


def _model_id(model: Location) -> str:
    return json.loads((model / "training_config.json").read_text())["model_id"]


@pytest.fixture
def in_empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from an empty folder: a remote location mistaken for a local path would appear in it."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


@pytest.mark.timeout(600)
def test_s3_workdir_writes_the_same_model_report_and_labels_as_local(
    s3_workdir: str, local_run: Workdir, paragraphs: list[Paragraph], in_empty_cwd: Path
) -> None:
    w = Workdir.of(s3_workdir)
    (w.reports / "report.md").write_text("the report stage's page\n")  # evaluate must leave it alone
    _flow(s3_workdir, paragraphs, [])
    # the model directory was published to the store, complete
    assert {f.relative_to(w.model) for f in w.model.glob("**")} >= MODEL_FILES
    assert _model_id(w.model) == _model_id(local_run.model)  # same data, seed and steps: same weights
    remote_m = json.loads((w.model / "metrics.json").read_text())
    local_m = json.loads((local_run.model / "metrics.json").read_text())
    assert remote_m["validation"]["n"] == local_m["validation"]["n"] > 0
    # evaluate's report and plots are on the store; the other stage's page survived
    md = (w.reports / "classifier.md").read_text()
    assert "0.876" in md and _model_id(w.model) in md
    for png in ("confusion.png", "reliability.png", "score.png"):
        assert (w.reports / png).read_bytes()[:4] == b"\x89PNG" and f"]({png})" in md
    assert (w.reports / "report.md").read_text() == "the report stage's page\n"
    metrics = json.loads((w.reports / "classifier_metrics.json").read_text())
    assert metrics["n"] == json.loads((local_run.reports / "classifier_metrics.json").read_text())["n"]
    # propagate: the same rows, model id included, as from the local work directory
    remote, local = _labels(w), _labels(local_run)
    assert len(remote) == len(paragraphs)
    _assert_same_labels(remote, local)
    assert {r[4] for r in remote} == {_model_id(w.model)}
    summary = json.loads(w.state("propagate").read_text())
    assert summary["labels"] == len(paragraphs) and summary["model_ids"] == [_model_id(w.model)]
    assert list(in_empty_cwd.iterdir()) == []  # nothing was written to a local folder named "s3:"


@pytest.mark.timeout(600)
def test_gcs_workdir_with_the_model_elsewhere(
    gcs_workdir: str, local_run: Workdir, paragraphs: list[Paragraph], in_empty_cwd: Path
) -> None:
    out = gcs_workdir + "-models/student-a"  # --out / --model: any location, not only W/model
    w = _flow(gcs_workdir, paragraphs, ["--no_auth"], out=out)
    assert not w.model.exists()
    assert _model_id(Location(out)) == _model_id(local_run.model)
    md = (w.reports / "classifier.md").read_text()  # named in the provenance line and the model line
    assert f"Model `{_model_id(local_run.model)}`" in md and "student-a" not in md
    _assert_same_labels(_labels(w), _labels(local_run))  # the model id is the trained one, not "student-a"
    assert list(in_empty_cwd.iterdir()) == []


def _put(w: Workdir, local_run: Workdir, paragraphs: list[Paragraph]) -> None:
    """The local run's paragraphs and model, uploaded to a remote work directory."""
    write_workdir(w, paragraphs, paragraphs[::2])
    w.model.upload_from(local_run.model.local)


@pytest.mark.timeout(600)
def test_remote_model_is_copied_once_per_process(
    s3_workdir: str, s3_server: Any, local_run: Workdir, paragraphs: list[Paragraph]
) -> None:
    w = Workdir.of(s3_workdir)
    _put(w, local_run, paragraphs)
    cfg = PropagateConfig(model_dir=str(w.model), batch_size=4, beam_batch_size=4, torch_threads=1)
    before = storage_ops.downloads
    # two pipelines (new handlers, new Shared handles), two bundle threads each, 15 batches each
    for _ in range(2):
        summary = run_propagate(w, cfg, ["--direct_running_mode=multi_threading", "--direct_num_workers=2"])
        assert summary["labels"] == len(paragraphs)
    assert storage_ops.downloads == before + 1
    # a further handler in this process: no download, a few listing requests only
    requests = s3_server.requests()
    assert StudentModelHandler(cfg).load_model().model_id == _model_id(local_run.model)
    assert storage_ops.downloads == before + 1
    assert s3_server.requests() - requests <= len(w.model.glob("**")) + 3
    _assert_same_labels(_labels(w), _labels(local_run))
    # a rewritten model file (same size) is a new version: fetched again, and its id recorded
    cfg_file = w.model / "training_config.json"
    doc = json.loads(cfg_file.read_text())
    new_id = doc["model_id"][:-4] + ("beef" if not doc["model_id"].endswith("beef") else "cafe")
    cfg_file.write_text(json.dumps(dict(doc, model_id=new_id), indent=2, sort_keys=True) + "\n")
    run_propagate(w, cfg, [])
    assert storage_ops.downloads == before + 2
    assert {r[4] for r in _labels(w)} == {new_id}


def test_a_model_without_recorded_id_is_named_after_its_remote_directory(
    s3_workdir: str, local_run: Workdir, tmp_path: Path
) -> None:
    import shutil

    d = tmp_path / "m"
    shutil.copytree(local_run.model.local, d)
    cfg = json.loads((d / "training_config.json").read_text())
    del cfg["model_id"]
    (d / "training_config.json").write_text(json.dumps(cfg))
    remote = Location(s3_workdir) / "models" / "my-student"
    remote.upload_from(d)
    local_id = StudentModelHandler(PropagateConfig(model_dir=str(d))).load_model().model_id
    remote_id = StudentModelHandler(PropagateConfig(model_dir=str(remote))).load_model().model_id
    assert local_id == "m" and remote_id == "my-student"  # not the name of the temporary copy


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_multiprocess_workers_read_the_remote_model(
    s3_workdir: str, local_run: Workdir, paragraphs: list[Paragraph]
) -> None:
    w = Workdir.of(s3_workdir)
    _put(w, local_run, paragraphs)
    argv = ["propagate", "--workdir", s3_workdir, *PROPAGATE, "--torch-threads", "1",
            "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    assert cli(argv) == 0
    _assert_same_labels(_labels(w), _labels(local_run))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_external_workers_read_the_remote_model(
    s3_workdir: str, s3_worker_pool: Any, local_run: Workdir, paragraphs: list[Paragraph]
) -> None:
    """Beam's SDK worker pool in another process, empty cwd, nothing but the S3 settings in its
    environment: the workers find the model on the store through their own FileSystems."""
    w = Workdir.of(s3_workdir)
    _put(w, local_run, paragraphs)
    argv = ["propagate", "--workdir", s3_workdir, *PROPAGATE, "--torch-threads", "1", *s3_worker_pool.beam_args()]
    before = storage_ops.downloads
    assert cli(argv) == 0, s3_worker_pool.log_tail()
    assert storage_ops.downloads == before  # the workers fetched the model, not this process
    _assert_same_labels(_labels(w), _labels(local_run))
