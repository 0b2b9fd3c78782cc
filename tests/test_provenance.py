"""Provenance in every artifact: manifest, dataset card, corpus report, classifier report and label
tables name the tool, teacher, prompt, student, snapshot and recipe; stand-in labels say so first;
no absolute local path is published."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.core import provenance
from pipeline.core.records import Annotation, arrow_schema, as_row
from pipeline.core.workdir import Workdir
from pipeline.stages import curate as C
from pipeline.stages.report import report
from pipeline.teacher.local import LOCAL_MODEL_NAME
from pipeline.teacher.rule_server import MODEL_NAME as RULE_SERVER_NAME
from pipeline.teacher.rules import RULE_TEACHER
from tests.test_curate import build_workdir


def _annotate_with(wd: Path, model: str, endpoint: str = "http://127.0.0.1:8000/v1") -> None:
    """Replace W/annotations by the labels' values under `model`, with annotate's metadata."""
    labels = pq.read_table(wd / "labels").to_pylist()
    rows = [Annotation(id=r["id"], article_id=r["article_id"], document_type=r["document_type"], domain=r["domain"],
                       educational_score=round(r["educational_score"]), teacher_model=model, prompt_version="v1",
                       prompt_hash="abc123", input_hash="i", prompt_tokens=1, completion_tokens=1, latency_s=0.1,
                       attempts=1) for r in labels]  # fmt: skip
    meta = provenance.parquet_metadata(provenance.teacher_record(model, endpoint, "v1", "abc123"))
    (wd / "annotations").mkdir(exist_ok=True)
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist([as_row(r) for r in rows], schema=arrow_schema(Annotation, meta)),
                   wd / "annotations" / "part-0.parquet")


def test_the_stand_in_teachers_are_the_ones_the_teacher_layer_serves() -> None:
    assert {LOCAL_MODEL_NAME, RULE_TEACHER, RULE_SERVER_NAME} <= set(provenance.STAND_INS)
    assert provenance.endpoint_kind("https://api.example.org/v1", "gpt-x") == "remote OpenAI-compatible endpoint"
    assert provenance.endpoint_kind("http://localhost:8000/v1", "llama") == "local OpenAI-compatible endpoint"
    assert provenance.endpoint_kind("", "m", batch="openai") == "OpenAI Batch API"
    t = provenance.tool()
    assert t["name"] == "pmc-curate" and t["version"]
    # this test runs from a git checkout: the commit is named (40 hex digits, maybe "-dirty")
    assert t["git_commit"] and len(t["git_commit"].split("-")[0]) == 40


def test_a_subset_built_on_stand_in_labels_says_so_first(tmp_path: Path) -> None:
    wd = build_workdir(tmp_path / "w")
    _annotate_with(wd, LOCAL_MODEL_NAME)
    manifest = C.curate(C.CurateConfig(workdir=wd, recipe="be-base", threads=2, export=False))
    out = wd / "subsets" / "be-base"
    text = (out / "manifest.json").read_text()
    assert str(tmp_path) not in text, "an absolute local path would be published with the subset"
    on_disk = json.loads(text)
    assert list(on_disk)[0] == "warning" and on_disk["warning"].startswith("STAND-IN LABELS")
    prov = on_disk["provenance"]
    assert prov["teachers"] == [{"model": LOCAL_MODEL_NAME, "endpoint_kind": "offline local teacher",
                                 "prompt_version": "v1", "prompt_hash": "abc123", "paragraphs": 10}]
    assert prov["students"] == [{"model_id": "test-student", "paragraphs": 10}]
    assert prov["recipe_sha256"] == manifest["recipe"]["sha256"] and "pmc_snapshot" in prov
    assert prov["tool"]["version"] and on_disk["recipe"]["path"] == "builtin:be-base.sql"
    assert on_disk["inputs"]["labels"]["path"] == "W/labels"

    card = (out / "README.md").read_text()
    from huggingface_hub import DatasetCard

    parsed = DatasetCard(card)
    assert parsed.data.license == "other" and parsed.data.license_name and parsed.data.license_link
    assert "stand-in-labels" in parsed.data.tags and "STAND-IN" in parsed.data.pretty_name
    body = parsed.text.strip().splitlines()
    assert body[0] == "# be-base" and "STAND-IN LABELS" in body[2]
    assert "test-student" in card and "abc123" in card and str(tmp_path) not in card


def test_a_real_teacher_gives_no_warning_and_the_report_names_it(tmp_path: Path) -> None:
    wd = build_workdir(tmp_path / "w")
    _annotate_with(wd, "Llama-3.1-70B-Instruct", "https://gpu-node.example.org/v1")
    manifest = C.curate(C.CurateConfig(workdir=wd, recipe="be-base", threads=2, export=False))
    assert "warning" not in manifest and manifest["provenance"]["stand_in"] is None
    card = (wd / "subsets" / "be-base" / "README.md").read_text()
    assert "STAND-IN" not in card and "Llama-3.1-70B-Instruct via remote OpenAI-compatible endpoint" in card
    page = report(wd, threads=1).read_text()
    first = page.splitlines()[:4]
    assert any(line.startswith("Provenance: pmc-curate") and "Llama-3.1-70B-Instruct" in line for line in first)
    assert "student: `test-student`" in page


def test_report_and_label_tables_carry_it(tmp_path: Path) -> None:
    wd = build_workdir(tmp_path / "w")
    _annotate_with(wd, RULE_TEACHER)
    page = report(wd, threads=1).read_text()
    assert page.splitlines()[2].startswith("> **STAND-IN LABELS") and "keyword rules" in page.splitlines()[2]
    stats = json.loads((wd / "reports" / "stats.json").read_text())
    assert list(stats)[0] == "warning" and stats["provenance"]["teachers"][0]["endpoint_kind"] == "rule teacher"
    # the annotations table written above carries its teacher in the schema metadata
    recs = provenance.read_parquet_provenance(Workdir.of(wd).files("annotations"))
    assert recs == [{"model": RULE_TEACHER, "endpoint_kind": "rule teacher", "prompt_version": "v1",
                     "prompt_hash": "abc123"}]


def test_relative_paths() -> None:
    wd = Workdir.of("/data/w")
    assert provenance.relative("/data/w/labels", wd) == "W/labels"
    assert provenance.relative("/home/me/recipes/mine.sql", wd) == "mine.sql"


@pytest.mark.parametrize("model", [LOCAL_MODEL_NAME, RULE_SERVER_NAME])
def test_stand_in_sentence(model: str) -> None:
    s = provenance.stand_in([{"model": model, "paragraphs": 3}])
    assert s and s.startswith("STAND-IN LABELS") and "3 paragraphs" in s
    assert provenance.stand_in([{"model": "gpt-x", "paragraphs": 3}]) is None


def test_annotate_writes_its_teacher_into_the_annotations_metadata(tmp_path: Path) -> None:
    from tests.annotate_helpers import make_sample
    from tests.fakes.openai_server import FakeOpenAIServer
    from tests.test_annotate import annotate

    wd = make_sample(tmp_path, ["a1", "a2"])
    with FakeOpenAIServer() as server:
        assert annotate(tmp_path, server.url) == 0
    recs = provenance.read_parquet_provenance(wd.files("annotations"))
    assert len(recs) == 1 and recs[0]["model"] == "teacher-x" and recs[0]["prompt_version"] == "v1"
    assert recs[0]["endpoint_kind"] == "local OpenAI-compatible endpoint" and len(recs[0]["prompt_hash"]) >= 8
    assert recs[0]["tool"]["name"] == "pmc-curate"
    assert provenance.teachers(wd)[0]["endpoint_kind"] == "local OpenAI-compatible endpoint"


def test_the_classifier_report_names_teacher_and_student_and_cautions(tmp_path: Path) -> None:
    """evaluate on 10 stand-in annotations: classifier.md opens with the stand-in warning and the
    provenance line, then cautions that 10 paragraphs cannot judge the student; the JSON too."""
    from classifiers.evaluate import evaluate
    from tests.students import save_fresh_student

    wd = build_workdir(tmp_path / "w")
    _annotate_with(wd, LOCAL_MODEL_NAME)
    model = save_fresh_student(tmp_path / "model", 64, "fresh-student")
    doc = evaluate(Workdir.of(wd), model, wd / "reports", split="all", device="cpu")
    lines = (wd / "reports" / "classifier.md").read_text().splitlines()
    assert lines[2].startswith("> **STAND-IN LABELS") and LOCAL_MODEL_NAME in lines[2]
    assert lines[4].startswith("Provenance: pmc-curate") and "student: `fresh-student`" in lines[4]
    assert lines[6].startswith("> **Caution:** the held-out set (all annotations) is too small")
    on_disk = json.loads((wd / "reports" / "classifier_metrics.json").read_text())
    assert list(on_disk)[:2] == ["warning", "provenance"] and on_disk["warning"].startswith("STAND-IN")
    assert "10 paragraphs" in on_disk["caution"] and doc["domain"]["kappa"] == "n/a (10 paragraphs, fewer than 30)"
    assert str(tmp_path) not in json.dumps(on_disk["provenance"])
