"""`parse --update` then `propagate`: only paragraphs without a label for their current input are labelled.

The layout is a PMC Cloud mirror built from the real sample and served by the S3 server (a private
bucket); day 2 edits one article's body text, another's title only, adds an article and removes one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline.cli import main
from tests.pmc_cloud_mirror import DAY1, DAY2, LayoutWriter, upload
from tests.students import save_fresh_student

pytestmark = [pytest.mark.shared_data, pytest.mark.timeout(1200)]


def _labels(w: Path, pattern: str = "*.parquet") -> dict[str, tuple[Any, ...]]:
    rows = duckdb.sql(
        f"SELECT id, document_type, domain, educational_score, document_type_scores, input_hash, model_id "
        f"FROM read_parquet('{w}/labels/{pattern}')"
    ).fetchall()
    return {r[0]: r[1:] for r in rows}


def _inputs(w: Path) -> dict[str, tuple[str, str | None]]:
    return {i: (t, s) for i, t, s in duckdb.sql(f"SELECT id, text, section_title FROM '{w}/paragraphs/*.parquet'").fetchall()}


def _edit_body(xml: bytes) -> bytes:
    """Prepend a sentence to the first paragraph of <body> (the body text changes, nothing else)."""
    at = xml.index(b"<p", xml.index(b"<body"))
    at = xml.index(b">", at) + 1
    return xml[:at] + b"An edited sentence opens this paragraph. " + xml[at:]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_fresh_student(tmp_path_factory.mktemp("model"), 32, "delta-student")


def test_update_then_propagate_labels_only_what_changed(shared_sample: Path, s3_server: Any, model_dir: Path, tmp_path: Path) -> None:
    with s3_server.use():  # the S3 settings (endpoint, test credentials) in the environment
        _update_then_propagate(shared_sample, s3_server, model_dir, tmp_path)


def _update_then_propagate(shared_sample: Path, s3_server: Any, model_dir: Path, tmp_path: Path) -> None:
    files = sorted((p for p in shared_sample.iterdir() if p.suffix in (".xml", ".nxml")), key=lambda p: p.name)[:7]
    ids = ["PMC" + str(int(p.stem[3:])) for p in files]
    root = tmp_path / "layout"
    lw = LayoutWriter(root)
    for pmcid, p in zip(ids[:6], files[:6], strict=True):
        lw.version(pmcid, 1, p.read_bytes())
    lw.inventory(DAY1)
    bucket = s3_server.bucket()
    upload(root, s3_server.client(), bucket, acl="private")
    w = tmp_path / "w"
    propagate = ["propagate", "--workdir", str(w), "--model-dir", str(model_dir), "--batch-size", "16"]
    assert main(["parse", f"s3://{bucket}", "--workdir", str(w)]) == 0
    assert main(propagate) == 0
    day1, inputs1 = _labels(w), _inputs(w)
    assert json.loads((w / "_stages" / "state" / "propagate.json").read_text())["mode"] == "full"
    # Day 2: body text edited (ids[0]), title only edited (ids[1]), a new article (ids[6]), one removed (ids[2]).
    lw.version(ids[0], 1, _edit_body(files[0].read_bytes()))
    lw.version(ids[1], 1, files[1].read_bytes().replace(b"<article-title>", b"<article-title>Retitled: ", 1))
    lw.version(ids[6], 1, files[6].read_bytes())
    lw.remove(ids[2], 1)
    lw.inventory(DAY2)
    client = s3_server.client()
    for key in [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]:
        client.delete_object(Bucket=bucket, Key=key)
    upload(root, client, bucket, acl="private")
    assert main(["parse", f"s3://{bucket}", "--workdir", str(w), "--update"]) == 0
    inputs2 = _inputs(w)
    # status says how current the corpus is and what the update changed.
    from pipeline.core.workdir import Workdir
    from pipeline.flow.status import collect, render

    entries = collect(Workdir.of(w))
    corpus = next(e for e in entries if e["command"] == "parse")["corpus"]
    assert corpus["snapshots"] == {DAY2: 3, DAY1: 3}  # re-read articles carry the new snapshot
    u = corpus["last_update"]
    assert (u["snapshot"], u["new"], u["changed"], u["removed"], u["tombstones"]) == (DAY2, 1, 2, 1, 1)
    assert f"snapshot: {DAY2} (3 articles), {DAY1} (3 articles)" in render(entries)
    assert f"last update to {DAY2}: 1 new, 2 changed, 1 removed versions" in render(entries)
    expected = {i for i, v in inputs2.items() if inputs1.get(i) != v}
    assert expected  # the edited paragraph and the new article's
    assert {i.split("/")[0] for i in expected} == {ids[0], ids[6]}  # a new title alone changes no model input
    assert main(propagate) == 0
    s = json.loads((w / "_stages" / "state" / "propagate.json").read_text())
    day2 = _labels(w)
    fresh = set(_labels(w, "labels-*.parquet"))  # what this run's pipeline wrote
    assert s["mode"] == "delta" and fresh == expected and s["labelled_now"] == len(expected)
    assert set(day2) == set(inputs2)  # every current paragraph labelled once; the removed article's gone
    assert s["kept"] == len(inputs2) - len(expected)
    for i in set(day2) - expected:
        assert day2[i] == day1[i]  # kept, not recomputed
    # Nothing changed: nothing labelled, everything kept. A new model: everything labelled again.
    assert main(propagate) == 0
    s = json.loads((w / "_stages" / "state" / "propagate.json").read_text())
    assert (s["mode"], s["labelled_now"], s["kept"]) == ("delta", 0, len(inputs2)) and _labels(w) == day2
    # The subset says how current it is.
    assert main(["curate", "--workdir", str(w), "--recipe", "be-base"]) == 0
    m = json.loads((w / "subsets" / "be-base" / "manifest.json").read_text())
    assert m["snapshot"] == {"newest": DAY2, "articles": {DAY2: 3, DAY1: 3}}
    card = (w / "subsets" / "be-base" / "README.md").read_text()
    assert f"PMC Open Access as of the NLM inventory of {DAY2} (3 articles read from it; 3 unchanged since {DAY1})" in card
    assert main([*propagate, "--full"]) == 0
    assert json.loads((w / "_stages" / "state" / "propagate.json").read_text())["labelled_now"] == len(inputs2)
