"""`pmc-curate propagate`: one label row per real paragraph (or a reject), on every runner we have."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import apache_beam as beam
import duckdb
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from classifiers.data import model_input
from pipeline.cli import main as cli
from pipeline.core.errors import ConfigError
from pipeline.core.labels import DOCUMENT_TYPES, DOMAINS
from pipeline.core.records import Paragraph
from pipeline.core.workdir import Workdir
from pipeline.stages.propagate.config import PropagateConfig
from pipeline.stages.propagate.stage import run_propagate
from pipeline.stages.propagate.transforms import ScoreParagraphs, StudentModelHandler
from pipeline.teacher.rules import sample_paragraphs, write_table
from tests.students import save_fresh_student

MAX_LENGTH = 64


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default encoder with seeded fresh heads, saved as `train` saves (propagation does not care how good)."""
    return save_fresh_student(tmp_path_factory.mktemp("model"), MAX_LENGTH, "test-student")


def _labels(w: Workdir) -> list[tuple[Any, ...]]:
    return duckdb.sql(
        f"SELECT id, article_id, document_type, domain, educational_score, document_type_scores, domain_scores, "
        f"model_id, truncated FROM read_parquet('{w.glob('labels')}') ORDER BY id"
    ).fetchall()


def _workdir(root: Path, paragraphs: list[Paragraph]) -> Workdir:
    w = Workdir.of(root)
    write_table(paragraphs, Paragraph, w.paragraphs / "part-00000.parquet")
    return w


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.timeout(2400)  # a few minutes on 2 idle cores; the timeout only guards a busy shared machine
def test_propagate_over_the_sample_one_row_per_paragraph(tmp_path: Path, shared_sample: Path, model_dir: Path) -> None:
    paragraphs = sample_paragraphs(shared_sample)
    bad = [
        Paragraph(id="PMC1/p[98]", article_id="PMC1", path="p[98]", section_title="Empty", text="", n_tokens=0, language=None),
        Paragraph(id="PMC1/p[99]", article_id="PMC1", path="p[99]", section_title=None, text="  \n ", n_tokens=0, language=None),
    ]
    # Sample paragraphs all have >= 64 tokens (the parse stage's floor): add short ones that fit.
    paragraphs += [
        Paragraph(id=f"PMC1/p[{i}]", article_id="PMC1", path=f"p[{i}]", section_title="Results",
                  text=p.text.split(". ")[0][:200], n_tokens=0, language="en")
        for i, p in enumerate(paragraphs[:3])
    ]
    w = _workdir(tmp_path, paragraphs + bad)
    rc = cli(["propagate", "--workdir", str(w.root), "--model-dir", str(model_dir), "--batch-size", "32"])
    assert rc == 0
    rows = _labels(w)
    assert [r[0] for r in rows] == sorted(p.id for p in paragraphs)  # exactly one row each, no duplicate
    by_id = {p.id: p for p in paragraphs}
    for pid, aid, dtype, domain, score, tscores, dscores, mid, _ in rows:
        assert aid == by_id[pid].article_id and mid == "test-student"
        assert len(tscores) == len(DOCUMENT_TYPES) and len(dscores) == len(DOMAINS)
        assert sum(tscores) == pytest.approx(1.0, abs=1e-5) and sum(dscores) == pytest.approx(1.0, abs=1e-5)
        assert dtype == DOCUMENT_TYPES[int(np.argmax(tscores))] and domain == DOMAINS[int(np.argmax(dscores))]
        assert 1.0 <= score <= 5.0
    rejects = duckdb.sql(
        f"SELECT record_id, reason, stage FROM read_parquet('{w.root}/rejects/propagate-*.parquet') ORDER BY 1"
    ).fetchall()
    assert rejects == [("PMC1/p[98]", "empty_text", "propagate"), ("PMC1/p[99]", "empty_text", "propagate")]
    # truncation flags agree with an independent token count of the same input string
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    expected = {p.id: len(tok(model_input(p.text, p.section_title))["input_ids"]) > MAX_LENGTH for p in paragraphs}
    assert {r[0]: r[8] for r in rows} == expected
    assert any(expected.values()) and not all(expected.values())
    summary = w.state("propagate").read_text()
    assert f'"truncated": {sum(expected.values())}' in summary
    # the labels table names its student (and the tool) in its Parquet schema metadata
    from pipeline.core import provenance

    (rec,) = provenance.read_parquet_provenance(w.files("labels"))
    assert rec["student_model_id"] == "test-student" and rec["tool"]["name"] == "pmc-curate"


def _small(shared_sample: Path) -> list[Paragraph]:
    ps = sample_paragraphs(shared_sample, max_articles=6)
    return ps[::4][:24]


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.timeout(2400)
@pytest.mark.parametrize(
    "beam_argv",
    [
        ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
        ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"],
    ],
    ids=["multi_processing", "portable_loopback"],
)
def test_runners_write_the_same_rows(tmp_path: Path, shared_sample: Path, model_dir: Path, beam_argv: list[str]) -> None:
    paragraphs = _small(shared_sample)
    cfg = PropagateConfig(model_dir=str(model_dir), batch_size=8, beam_batch_size=16, torch_threads=1)
    ref = _workdir(tmp_path / "ref", paragraphs)
    run_propagate(ref, cfg, [])
    other = _workdir(tmp_path / "other", paragraphs)
    summary = run_propagate(other, cfg, beam_argv)
    assert summary["labels"] == len(paragraphs) and summary["rejects"] == {}
    a, b = _labels(ref), _labels(other)
    assert [r[:4] + r[7:] for r in a] == [r[:4] + r[7:] for r in b]
    np.testing.assert_allclose([r[5] for r in a], [r[5] for r in b], atol=1e-5)
    np.testing.assert_allclose([r[4] for r in a], [r[4] for r in b], atol=1e-4)


class _FailingHandler(StudentModelHandler):
    """Fails every batch that contains a poisoned paragraph, as a broken model or OOM would."""

    def run_inference(self, batch, model, inference_args=None):  # type: ignore[no-untyped-def]
        if any("POISON" in p["text"] for p in batch):
            raise RuntimeError("CUDA out of memory (simulated)")
        return super().run_inference(batch, model, inference_args)


@pytest.mark.shared_data
def test_failed_batches_become_rejects_not_lost_rows(model_dir: Path, shared_sample: Path) -> None:
    paragraphs = _small(shared_sample)[:6]
    cfg = PropagateConfig(model_dir=str(model_dir), beam_batch_size=1)
    elements = [{"id": p.id, "article_id": p.article_id, "text": p.text, "section_title": p.section_title}
                for p in paragraphs]
    elements.append({"id": "PMC9/p[0]", "article_id": "PMC9", "text": "POISON text", "section_title": None})
    elements.append({"id": "PMC9/p[1]", "article_id": "PMC9", "text": None, "section_title": None})
    with BeamTestPipeline(options=beam.options.pipeline_options.PipelineOptions(["--runner=DirectRunner"])) as p:
        labels, rejects = p | beam.Create(elements) | ScoreParagraphs(cfg, _FailingHandler(cfg))
        assert_that(labels | "LabelIds" >> beam.Map(lambda r: r["id"]), equal_to([q.id for q in paragraphs]), label="labels")
        assert_that(
            rejects | "RejectKeys" >> beam.Map(lambda r: (r["record_id"], r["reason"])),
            equal_to([("PMC9/p[0]", "inference_error"), ("PMC9/p[1]", "empty_text")]),
            label="rejects",
        )


def test_missing_inputs_are_config_errors(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli(["propagate", "--workdir", str(tmp_path)]) == 2
    assert "run `pmc-curate parse` first" in capsys.readouterr().err
    w = _workdir(tmp_path, [Paragraph(id="PMC1/p[0]", article_id="PMC1", path="p[0]", section_title=None,
                                      text="x", n_tokens=1, language=None)])
    assert cli(["propagate", "--workdir", str(w.root)]) == 2
    assert "run `pmc-curate train` first" in capsys.readouterr().err


def test_int8_precision_through_the_stage_records_it_in_model_id(tmp_path: Path, model_dir: Path) -> None:
    """--precision int8 reaches the workers' Predictor; every label names it; fp32 and int8 runs are not mixed by
    the delta (the precision is part of the model fingerprint)."""
    paragraphs = [Paragraph(id=f"PMC9/p[{i}]", article_id="PMC9", path=f"p[{i}]", section_title="Results",
                            text=f"Cells were cultured for {i} hours and treated with cisplatin. " * (1 + i % 4),
                            n_tokens=0, language="en") for i in range(12)]  # fmt: skip
    w = _workdir(tmp_path / "w", paragraphs)
    cfg = PropagateConfig(model_dir=str(model_dir), batch_size=4, max_length=MAX_LENGTH, precision="int8")
    s = run_propagate(w, cfg, [])
    # an int8 path re-runs in fp32 the rows it cannot call (--fallback-margin, 0.05 by default), and says so
    assert s["labels"] == 12 and s["model_ids"] == ["test-student+int8+fp32-below-0.05"]
    plain = run_propagate(w, replace(cfg, fallback_margin=0.0), [])
    assert plain["mode"] == "full" and plain["model_ids"] == ["test-student+int8"]
    with pytest.raises(ConfigError, match="needs --precision int8 or onnx-int8, not fp32"):
        run_propagate(w, replace(cfg, precision="fp32", fallback_margin=0.1), [])
    again = run_propagate(w, PropagateConfig(model_dir=str(model_dir), batch_size=4, max_length=MAX_LENGTH,
                                             precision="fp32"), [])  # fmt: skip
    assert again["mode"] == "full" and again["model_ids"] == ["test-student"]
