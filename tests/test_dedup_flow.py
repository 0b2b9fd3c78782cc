"""dedup and decontaminate as steps of the demo's flow: parse -> dedup -> decontaminate on the embedded
corpus, with the demo's own settings (its invented PubMedQA item names PMC9100004's PMID); a second run
skips both, and changing the benchmark file redoes decontaminate only."""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipeline import flow
from pipeline.core.workdir import Workdir
from pipeline.flow import demo


def test_demo_steps_dedup_and_decontaminate(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # run from elsewhere: the shipped benchmark example is still found
    cfg = demo.demo_config(str(tmp_path / "w"))
    (spec,) = next(s for s in cfg.steps if s.command == "decontaminate").flags["benchmarks"]
    assert spec.startswith("pubmedqa=/") and Path(spec.split("=", 1)[1]).is_file()
    cfg.steps = [s for s in cfg.steps if s.command in ("parse", "dedup", "decontaminate")]
    assert [s.command for s in cfg.steps] == ["parse", "dedup", "decontaminate"]
    assert flow.run_flow(cfg, echo=lambda s: None) == 0
    wd = Workdir.of(cfg.workdir)
    rows = duckdb.sql(f"SELECT DISTINCT article_id, rule FROM '{wd.glob('contamination')}'").fetchall()
    assert rows == [("PMC9100004", "pmid")]
    assert flow.read_marker(wd, "dedup")["status"] == "finished"
    first = flow.read_marker(wd, "decontaminate")
    log: list[str] = []
    assert flow.run_flow(cfg, echo=log.append) == 0
    assert flow.read_marker(wd, "decontaminate") == first  # nothing changed: skipped
    bench = tmp_path / "pubmedqa.jsonl"
    bench.write_text('{"pubid": "39100005", "question": "An invented question on motor neurons?", "long_answer": "x"}\n')
    step = next(s for s in cfg.steps if s.command == "decontaminate")
    step.flags["benchmarks"] = [f"pubmedqa={bench}"]
    assert flow.run_flow(cfg, echo=lambda s: None) == 0
    rows = duckdb.sql(f"SELECT DISTINCT article_id FROM '{wd.glob('contamination')}'").fetchall()
    assert rows == [("PMC9100005",)]


def test_both_stages_on_s3_write_what_a_local_run_writes(tmp_path: Path, s3_workdir: str) -> None:
    from pipeline.stages.decontaminate import DecontaminateConfig, run_decontaminate
    from pipeline.stages.dedup.config import DedupConfig
    from pipeline.stages.dedup.stage import run_dedup
    from tests.dedup_stage_helpers import write_workdir

    local = write_workdir(tmp_path / "local")
    remote = Workdir.of(s3_workdir)
    for t in ("articles", "paragraphs"):
        remote.table(t).upload_from(local.root.local / t)
    bench = tmp_path / "pqa.jsonl"
    bench.write_text('{"pubid": "4000", "question": "An invented question?", "long_answer": "x"}\n')
    for wd in (local, remote):
        run_dedup(wd, DedupConfig(workdir=str(wd.root)), [])
        run_decontaminate(wd, DecontaminateConfig(workdir=str(wd.root), benchmarks=[f"pubmedqa={bench}"]), [])
    from pipeline.core import tables

    for t in ("duplicates", "contamination"):
        got = tables.read_table(remote, t).sort_by("id").to_pylist()
        assert got and got == tables.read_table(local, t).sort_by("id").to_pylist()
