"""Propagate's delta plan under faults (issue 18, item 4): no label doubled by a kill, `--full` checks its
input before anything is replaced, and the flow's marker no longer hides the stage's own state.

The stage writes the kept labels into a new labels folder that replaces W/labels whole when the run ends
(`Workdir.rewriting`); `plan_and_publish` below does the same around the plan alone.

The plan (pipeline/stages/propagate/delta.py) is SQL over real Parquet tables, locally and on the S3
server; kills are injected at a storage operation (tests/faults.py). The model is not needed: the plan
reads only the model's fingerprint, which these tests write as the previous run's state.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.core import storage
from pipeline.core.errors import ConfigError
from pipeline.core.records import Label, Paragraph, arrow_schema, as_row
from pipeline.core.workdir import Workdir
from pipeline.stages.propagate import delta
from tests.faults import Killed, kill_at

FP = "fingerprint-1"
N = 40


def _hash(title: str | None, text: str) -> str:
    raw = f"{title.strip()}\n\n{text}" if title and title.strip() else text
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _write(loc: storage.Location, cls: type, rows: list) -> None:
    storage.write_parquet(pa.Table.from_pylist([as_row(r) for r in rows], schema=arrow_schema(cls)), loc)


def _workdir(root: str, labelled: int = N) -> Workdir:
    """N paragraphs in two files; the first `labelled` labelled in two files; the previous run's state."""
    wd = Workdir.of(root)
    paras = [Paragraph(id=f"PMC{i // 4}/p[{i % 4}]", article_id=f"PMC{i // 4}", path=f"p[{i % 4}]",
                       section_title="Intro" if i % 2 else None, text=f"Paragraph number {i}.", n_tokens=3,
                       language="en", language_score=0.9) for i in range(N)]  # fmt: skip
    _write(wd.paragraphs / "part-0.parquet", Paragraph, paras[: N // 2])
    _write(wd.paragraphs / "part-1.parquet", Paragraph, paras[N // 2:])
    labels = [Label(id=p.id, article_id=p.article_id, document_type="Study", domain="clinical", educational_score=3.0,
                    document_type_scores=[0.25] * 4, domain_scores=[1 / 3] * 3, model_id="m", truncated=False,
                    input_hash=_hash(p.section_title, p.text)) for p in paras[:labelled]]  # fmt: skip
    _write(wd.labels / "labels-0.parquet", Label, labels[: labelled // 2])
    _write(wd.labels / "labels-1.parquet", Label, labels[labelled // 2:])
    delta.write_state(wd, {"model_fingerprint": FP, "mode": "full"})
    return wd


def plan_and_publish(wd: Workdir, full: bool = False) -> delta.Plan:
    """The plan inside the labels rewrite, as the stage runs it (no labels computed: the kept ones only)."""
    with wd.rewriting(("labels",)) as out:
        return delta.plan(wd, FP, out.labels, full=full)


def _ids(wd: Workdir) -> list[str]:
    con = storage.duckdb_connect()
    try:
        return [r[0] for r in con.sql("SELECT id FROM read_parquet($g)", params={"g": wd.glob("labels")}).fetchall()]
    finally:
        con.close()


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(tmp_path / "w") if request.param == "local" else request.getfixturevalue("s3_workdir")


def test_a_kill_before_the_publish_leaves_the_old_labels(root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    wd = _workdir(root, labelled=N - 5)
    before = sorted(_ids(wd))
    fault = kill_at(monkeypatch, "write_from", when=lambda loc: "/cache/propagate/todo" in str(loc))
    with pytest.raises(Killed):
        plan_and_publish(wd)  # the kept file is in the new folder, the kill comes before the swap
    assert fault.fired
    monkeypatch.undo()
    assert sorted(_ids(wd)) == before
    p = plan_and_publish(wd)
    assert (p.full, p.kept, p.todo) == (False, N - 5, 5)
    ids = _ids(wd)
    assert len(ids) == len(set(ids)) == N - 5
    assert [f.name for f in wd.files("labels")] == [f.name for f in wd.files("labels") if f.name.startswith("kept-")]


def test_a_kill_mid_publish_on_s3_is_finished_by_the_next_writer(s3_workdir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.flow import debris

    wd = _workdir(s3_workdir, labelled=N - 5)
    fault = kill_at(monkeypatch, "unlink", when=lambda loc: "/labels/labels-" in str(loc))
    with pytest.raises(Killed):
        plan_and_publish(wd)  # the kept file is copied into W/labels, the old files not yet removed
    assert fault.fired
    monkeypatch.undo()
    left = _ids(wd)
    assert len(left) > len(set(left))  # the window of an object-store publish: old and new files together
    debris.collect(wd)  # the next writer finishes the journaled publish first
    ids = _ids(wd)
    assert len(ids) == len(set(ids)) == N - 5
    assert all(f.name.startswith("kept-") for f in wd.files("labels"))


def test_a_kept_file_beside_the_files_it_superseded_is_healed(tmp_path: Path) -> None:
    """What an older version's killed run left in place: the next plan removes the superseded files."""
    wd = _workdir(str(tmp_path / "w"), labelled=N - 5)
    scratch = storage.Location(tmp_path / "scratch")
    scratch.mkdir()
    delta.plan(wd, FP, scratch)
    kept = scratch.glob("kept-*")[0]
    kept.copy_to(wd.labels / kept.name)  # the kept file in W/labels, beside the old files it names
    assert len(_ids(wd)) == 2 * (N - 5)
    removed = delta.heal(wd)
    assert sorted(removed) == ["labels-0.parquet", "labels-1.parquet"]
    ids = _ids(wd)
    assert len(ids) == len(set(ids)) == N - 5


def test_a_labels_table_already_doubled_is_kept_once(tmp_path: Path) -> None:
    wd = _workdir(str(tmp_path / "w"))
    (wd.labels / "labels-0.parquet").local.rename(wd.labels.local / "copy-a.parquet")
    import shutil

    shutil.copy(wd.labels.local / "copy-a.parquet", wd.labels.local / "copy-b.parquet")  # 20 ids twice
    assert len(_ids(wd)) == N + N // 2
    p = plan_and_publish(wd)
    assert (p.kept, p.todo) == (N, 0)
    assert sorted(_ids(wd)) == sorted(set(_ids(wd)))


def test_the_kept_file_is_streamed_not_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wd = _workdir(str(tmp_path / "w"), labelled=N - 5)
    read_whole = kill_at(monkeypatch, "write_bytes", when=lambda loc: "kept-" in str(loc) or "todo" in str(loc))
    plan_and_publish(wd)
    assert not read_whole.calls  # written with write_from (a streamed copy), never as one bytes object


def test_full_reads_its_input_before_removing_labels(root: str) -> None:
    from pipeline.stages.propagate.stage import PropagateConfig, run_propagate

    wd = _workdir(root)
    model = Path(wd.local_cache) / "model"
    model.mkdir(parents=True)
    (model / "heads.safetensors").write_bytes(b"not read: the input check comes first")
    corrupt = wd.paragraphs / "part-1.parquet"
    raw = corrupt.read_bytes()
    corrupt.write_bytes(raw[:4] + b"\0" * (len(raw) - 12) + raw[-8:])  # data pages zeroed, footer kept
    before = sorted(_ids(wd))
    with pytest.raises(ConfigError, match=r"part-1\.parquet cannot be read.*labels were left as they are"):
        run_propagate(wd, PropagateConfig(workdir=root, model_dir=str(model), full=True), [])
    assert sorted(_ids(wd)) == before


def test_the_flow_marker_does_not_hide_the_stage_state(tmp_path: Path) -> None:
    """The flow writes W/_stages/propagate.json (its marker) around the stage; the delta still finds the
    fingerprint of the last run, in the stage's own file (and in markers older versions wrote)."""
    from pipeline.flow.markers import MARKER_VERSION, write_marker

    wd = _workdir(str(tmp_path / "w"), labelled=N - 5)
    write_marker(wd, "propagate", {"marker_version": MARKER_VERSION, "step": "propagate", "status": "running"})
    p = plan_and_publish(wd)
    assert (p.full, p.reason, p.kept) == (False, "delta", N - 5)
    # An older version's flow kept the stage's summary inside its marker: that is read too.
    wd.state("propagate").unlink()
    write_marker(wd, "propagate", {"marker_version": MARKER_VERSION, "status": "finished",
                                   "summary": {"model_fingerprint": FP, "mode": "full"}})
    assert plan_and_publish(wd).reason == "delta"
    assert json.loads((wd.stages / "propagate.json").read_text())["status"] == "finished"  # not overwritten


def test_corrupt_footer_of_paragraphs_names_the_file(tmp_path: Path) -> None:
    wd = _workdir(str(tmp_path / "w"))
    (wd.paragraphs / "part-0.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ConfigError, match=r"part-0\.parquet cannot be read"):
        plan_and_publish(wd, full=True)
    assert len(_ids(wd)) == N
    with pytest.raises(ConfigError, match=r"part-0\.parquet cannot be read"):  # the delta path, too
        plan_and_publish(wd)
    assert len(_ids(wd)) == N
