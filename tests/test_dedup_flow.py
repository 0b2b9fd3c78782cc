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
