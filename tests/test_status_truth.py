"""status and the flow tell the truth about tables (issue 18, item 2): rows the tables hold now, a table
whose files differ from what its step wrote flagged (and redone by the flow), corrupt Parquet named with
its table, never a traceback.

Stages are the stand-ins of tests/test_flow.py (real Parquet, the real flow); parse writes two part files.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline import flow
from pipeline.core.workdir import Workdir
from pipeline.flow import status as flow_status
from tests.test_flow import Stages, _config


class TwoParts(Stages):
    """parse writes its paragraphs as two files, as the real parse does."""

    def load(self, stage):
        module = super().load(stage)
        if stage.name == "parse":
            inner = module.run

            def run(config, beam_argv):
                rc = inner(config, beam_argv)
                wd = Workdir.of(config.workdir)
                t = pq.read_table(wd.paragraphs / "part-0.parquet")
                pq.write_table(t.slice(0, 2), wd.paragraphs.local / "part-00000-of-00002.parquet")
                pq.write_table(t.slice(2), wd.paragraphs.local / "part-00001-of-00002.parquet")
                (wd.paragraphs / "part-0.parquet").unlink()
                return rc

            module.run = run
        return module


def _entry(wd: Workdir, step: str) -> dict:
    return next(e for e in flow_status.collect(wd) if e["step"] == step)


def test_a_deleted_part_file_is_counted_flagged_and_redone(tmp_path: Path) -> None:
    st = TwoParts()
    cfg = _config(tmp_path)
    wd = Workdir.of(cfg.workdir)
    assert flow.run_flow(cfg, registry=st, echo=lambda s: None) == 0
    assert _entry(wd, "parse")["rows"]["paragraphs/*.parquet"] == 5
    (wd.paragraphs / "part-00001-of-00002.parquet").unlink()
    e = _entry(wd, "parse")
    assert e["rows"]["paragraphs/*.parquet"] == 2  # what the table holds now, not the marker's 5
    assert e["changed"] == ["paragraphs/*.parquet: 2 files, 5 rows when the step finished, 1 files now"]
    text = flow_status.render(flow_status.collect(wd))
    assert "! changed since parse wrote it: paragraphs/*.parquet" in text
    # The flow redoes parse (its output is not what it wrote), and everything after it.
    messages: list[str] = []
    st.calls.clear()
    assert flow.run_flow(cfg, registry=st, echo=messages.append) == 0
    assert st.calls == ["parse", "sample", "annotate"]
    assert any("output paragraphs/*.parquet lost 1 of the 2 files the step wrote "
               "(paragraphs/part-00001-of-00002.parquet)" in m for m in messages)
    assert _entry(wd, "parse")["changed"] == [] and _entry(wd, "parse")["rows"]["paragraphs/*.parquet"] == 5


def test_corrupt_parquet_is_named_with_its_table_and_status_does_not_crash(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import main

    st = TwoParts()
    cfg = _config(tmp_path)
    wd = Workdir.of(cfg.workdir)
    assert flow.run_flow(cfg, registry=st, echo=lambda s: None) == 0
    bad = wd.sample / "part-0.parquet"
    bad.write_bytes(b"PAR1" + b"\x00" * 64)  # truncated / foreign bytes
    (wd.rejects / "parse-0.parquet").write_bytes(b"not parquet at all")
    e = _entry(wd, "sample")
    assert any(p.startswith("table sample: ") and str(bad) in p for p in e["problems"])
    assert "sample/*.parquet" not in e["rows"]
    assert any("rejects" in p for p in _entry(wd, "parse")["problems"])
    assert main(["status", "--workdir", str(wd.root)]) == 0
    out = capsys.readouterr().out
    assert f"! unreadable: table sample: {bad} is not a readable Parquet file" in out
    assert "Traceback" not in out
