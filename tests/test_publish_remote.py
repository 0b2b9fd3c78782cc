"""Replacing a folder on an object store (a subset, imported labels): killed during the upload, the old
folder is whole; killed during the publish, the next writer completes it. On moto's S3 server."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core import storage
from pipeline.core.storage import Location
from pipeline.core.workdir import Workdir
from pipeline.flow import debris
from tests.faults import Killed, kill_at


def _build(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _read(folder: Location) -> dict[str, str]:
    return {f.relative_to(folder): f.read_text() for f in folder.glob("**")}


V1 = {"data/part-00000.parquet": "old 0", "export/part-00000.jsonl.zst": "old export", "manifest.json": "v1"}
V2 = {"data/part-00000.parquet": "new 0", "data/part-00001.parquet": "new 1", "manifest.json": "v2", "README.md": "card"}


@pytest.fixture
def published(tmp_path: Path, s3_workdir: str) -> tuple[Workdir, Location, Path]:
    wd = Workdir.of(s3_workdir)
    final = wd.subsets / "be-base"
    storage.publish_folder(_build(tmp_path / "v1", V1), final)
    assert _read(final) == V1
    return wd, final, _build(tmp_path / "v2", V2)


def test_a_kill_during_the_upload_leaves_the_old_folder_whole(published, monkeypatch: pytest.MonkeyPatch) -> None:
    wd, final, v2 = published
    fault = kill_at(monkeypatch, "open", when=lambda loc: "/subsets/.be-base.tmp-" in str(loc), nth=3)
    with pytest.raises(Killed):
        storage.publish_folder(v2, final)
    assert fault.fired
    monkeypatch.undo()
    assert _read(final) == V1  # the upload went to the shadow prefix only
    assert [x.name.startswith(".be-base.tmp-") for x in debris.find(wd)] == [True]
    debris.collect(wd)
    assert debris.find(wd) == [] and _read(final) == V1 and not debris.unfinished_publishes(wd)


@pytest.mark.parametrize("nth", [1, 3])
def test_a_kill_during_the_publish_is_completed_by_the_next_writer(published, monkeypatch: pytest.MonkeyPatch,
                                                                     nth: int) -> None:
    wd, final, v2 = published
    fault = kill_at(monkeypatch, "copy_to", nth=nth)
    with pytest.raises(Killed):
        storage.publish_folder(v2, final)
    assert fault.fired
    monkeypatch.undo()
    assert _read(final)["manifest.json"] == "v1"  # the manifest is copied last
    assert [str(x) for x in debris.unfinished_publishes(wd)] == [str(final)]
    debris.collect(wd)
    assert _read(final) == V2  # completed from the shadow; the old export shards are gone
    assert debris.find(wd) == [] and not debris.unfinished_publishes(wd)


def test_publish_is_idempotent(published) -> None:
    wd, final, v2 = published
    storage.publish_folder(v2, final)
    storage.publish_folder(v2, final)
    assert _read(final) == V2 and debris.find(wd) == []
