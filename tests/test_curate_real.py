"""Curate over the parse stage's real output (83 real PMC-OA articles) with deterministic labels."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.core import labels as L
from pipeline.core.records import Label, arrow_schema
from pipeline.stages import curate as C

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


def _labels_for(paragraphs: pa.Table) -> pa.Table:
    """A label per paragraph from a hash of its id: the recipes' logic does not care where labels come from."""
    rows = []
    for pid, aid in zip(paragraphs.column("id").to_pylist(), paragraphs.column("article_id").to_pylist(), strict=True):
        h = int(hashlib.sha256(pid.encode()).hexdigest(), 16)
        rows.append({"id": pid, "article_id": aid, "document_type": L.DOCUMENT_TYPES[h % 4],
                     "domain": L.DOMAINS[(h >> 8) % 3], "educational_score": 1 + (h >> 16) % 41 / 10,
                     "document_type_scores": [0.25] * 4, "domain_scores": [1 / 3] * 3, "model_id": "hash",
                     "truncated": False, "input_hash": None})  # fmt: skip
    return pa.Table.from_pylist(rows, schema=arrow_schema(Label))


@pytest.fixture(scope="module")
def real_wd(shared_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.cli import main

    wd = tmp_path_factory.mktemp("real") / "w"
    assert main(["parse", "--workdir", str(wd), str(shared_sample)]) == 0
    paragraphs = pq.read_table(wd / "paragraphs", columns=["id", "article_id"])
    (wd / "labels").mkdir()
    pq.write_table(_labels_for(paragraphs), wd / "labels" / "part-0.parquet")
    return wd


def test_real_corpus_every_recipe(real_wd: Path) -> None:
    paragraphs = pq.read_table(real_wd / "paragraphs", columns=["id", "article_id", "path", "n_tokens"])
    per_article: dict[str, set[str]] = {}
    for pid, aid in zip(paragraphs.column("id").to_pylist(), paragraphs.column("article_id").to_pylist(), strict=True):
        per_article.setdefault(aid, set()).add(pid)
    for recipe in ("be-base", "be-clinicalcase", "be-all"):
        manifest = C.curate(C.CurateConfig(workdir=real_wd, recipe=recipe, threads=1))
        table = pq.read_table(real_wd / "subsets" / recipe / "data")
        # The parse stage's n_tokens are MiniLM counts: reused, not recounted.
        assert manifest["tokens"]["n_tokens_column"]["same_as_export_tokenizer"] is True
        rows = table.select(["paragraph_id", "pmcid", "copy", "path"]).to_pylist()
        by_copy: dict[tuple[str, int], list[str]] = {}
        for r in rows:
            by_copy.setdefault((r["pmcid"], r["copy"]), []).append(r["path"])
        for (aid, _copy), paths in by_copy.items():
            keys = [[int(x) for x in re.findall(r"\[(\d+)\]", p)] for p in paths]
            assert keys == sorted(keys), f"{aid} out of document order"
            if recipe != "be-all":  # no filter: every paragraph of the article, every copy
                assert len(paths) == len(per_article[aid])
        assert manifest["stats"]["rows"] == table.num_rows
        docs = sum(1 for _ in (real_wd / "subsets" / recipe / "export").iterdir())
        assert docs >= 1


def test_real_corpus_commercial_only(real_wd: Path) -> None:
    articles = pq.read_table(real_wd / "articles", columns=["pmcid", "commercial"]).to_pylist()
    commercial = {a["pmcid"] for a in articles if a["commercial"]}
    manifest = C.curate(C.CurateConfig(workdir=real_wd, recipe="be-base", commercial_only=True, threads=1))
    table = pq.read_table(real_wd / "subsets" / "be-base-commercial" / "data")
    assert set(table.column("pmcid").to_pylist()) <= commercial
    assert set(manifest["stats"]["commercial"]) == {"true"}
    on_disk = json.loads((real_wd / "subsets" / "be-base-commercial" / "manifest.json").read_text())
    assert on_disk["commercial_only"] is True
