"""Sampling: deterministic by (id, seed), independent of file order, stratified so rare kinds appear."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.core.errors import ConfigError
from pipeline.core.records import Article, Paragraph, arrow_schema, as_row
from pipeline.core.workdir import Workdir
from pipeline.stages import sample as sample_mod
from pipeline.stages.sample import SampleConfig, quotas, sample_key, select, write_sample


def _article(pmcid: str, article_type: str, language: str = "en") -> Article:
    return Article(
        pmcid=pmcid, pmid=None, doi=None, title=f"Title of {pmcid}", journal="J", year=2020,
        article_type=article_type, license="CC BY", license_url=None, commercial=True,
        language=language, n_paragraphs=0, source="test",
    )  # fmt: skip


def make_workdir(root: Path, shards: int = 1, shuffle_seed: int = 0) -> Workdir:
    """A corpus: 40 research articles x 10 paragraphs, 2 case reports, 1 French article, 1 letter."""
    arts, paras = [], []
    spec = [(f"PMC{1000 + i}", "research-article", "en") for i in range(40)]
    spec += [("PMC9001", "case-report", "en"), ("PMC9002", "case-report", "en"), ("PMC9003", "research-article", "fr"),
             ("PMC9004", "letter", "en")]  # fmt: skip
    for pmcid, atype, lang in spec:
        arts.append(_article(pmcid, atype, lang))
        for j in range(10 if atype == "research-article" else 3):
            section = "Methods" if j % 2 else "Results"
            if pmcid == "PMC1005" and j == 0:
                section = "Case presentation"
            if j == 9:
                section = "Acknowledgements"
            path = f"sec[{j}]/p[0]"
            paras.append(Paragraph(id=f"{pmcid}/{path}", article_id=pmcid, path=path, section_title=section,
                                   text=f"paragraph {j} of {pmcid}", n_tokens=80, language=lang))  # fmt: skip
    random.Random(shuffle_seed).shuffle(paras)
    wd = Workdir.of(root)
    for name, rows, cls in (("articles", arts, Article), ("paragraphs", paras, Paragraph)):
        d = wd.reset_table(name)
        per = -(-len(rows) // shards)
        for s in range(shards):
            chunk = rows[s * per : (s + 1) * per]
            pq.write_table(pa.Table.from_pylist([as_row(r) for r in chunk], schema=arrow_schema(cls)), d / f"part-{s}.parquet")
    return wd


def test_same_sample_whatever_the_file_order_and_sharding(tmp_path: Path) -> None:
    a = make_workdir(tmp_path / "a", shards=1, shuffle_seed=1)
    b = make_workdir(tmp_path / "b", shards=7, shuffle_seed=2)
    ta, _ = select(a, SampleConfig(size=50, seed=3))
    tb, _ = select(b, SampleConfig(size=50, seed=3))
    assert ta.column("id").to_pylist() == tb.column("id").to_pylist()
    assert ta.num_rows == 50


def test_seed_changes_the_sample_and_key_is_md5_of_seed_and_id(tmp_path: Path) -> None:
    wd = make_workdir(tmp_path)
    t1, _ = select(wd, SampleConfig(size=30, seed=1, strategy="uniform"))
    t2, _ = select(wd, SampleConfig(size=30, seed=2, strategy="uniform"))
    assert set(t1.column("id").to_pylist()) != set(t2.column("id").to_pylist())
    for pid, key in zip(t1.column("id").to_pylist(), t1.column("sample_key").to_pylist(), strict=True):
        assert key == sample_key(1, pid)
    # uniform = the N smallest keys overall
    all_ids = pq.read_table(wd.paragraphs).column("id").to_pylist()
    expected = sorted(all_ids, key=lambda i: (sample_key(1, i), i))[:30]
    assert t1.column("id").to_pylist() == expected


def test_stratified_keeps_rare_kinds_that_uniform_misses(tmp_path: Path) -> None:
    wd = make_workdir(tmp_path)
    strat, summary = select(wd, SampleConfig(size=40, seed=0))
    kinds = set(strat.column("stratum").to_pylist())
    assert {"case_section", "case_report", "non_english", "short_type", "admin_section", "research"} <= kinds
    # the single "Case presentation" paragraph and the French article are always in
    ids = set(strat.column("id").to_pylist())
    assert "PMC1005/sec[0]/p[0]" in ids
    assert sum(1 for i in ids if i.startswith("PMC9003/")) >= summary["floors"]["non_english"] == 4
    assert summary["selected"]["research"] < summary["available"]["research"]
    # across seeds, uniform sampling of 40 of 419 paragraphs usually misses the one case section
    misses = sum(
        "PMC1005/sec[0]/p[0]" not in select(wd, SampleConfig(size=40, seed=s, strategy="uniform"))[0].column("id").to_pylist()
        for s in range(5)
    )
    assert misses >= 3


def test_sample_rows_carry_what_the_prompt_needs(tmp_path: Path) -> None:
    wd = make_workdir(tmp_path)
    table, summary = select(wd, SampleConfig(size=10, seed=0))
    path = write_sample(wd, table, summary)
    back = pq.read_table(path)
    row = back.to_pylist()[0]
    assert row["title"].startswith("Title of ") and row["text"] and row["section_title"]
    assert row["strategy"] == "stratified" and row["seed"] == 0
    assert b"pmc_curate.sample" in back.schema.metadata


def test_quotas_cap_by_availability_and_size() -> None:
    q = quotas({"research": 1000, "case_report": 2, "non_english": 50}, size=30, floor_share=0.5)
    assert q == {"research": 5, "case_report": 2, "non_english": 5}
    q = quotas({s: 100 for s in sample_mod.STRATA}, size=3, floor_share=1.0)
    assert sum(q.values()) == 3


def test_size_larger_than_corpus_takes_everything(tmp_path: Path) -> None:
    wd = make_workdir(tmp_path)
    table, _ = select(wd, SampleConfig(size=10_000, seed=0))
    assert table.num_rows == 419 == len(set(table.column("id").to_pylist()))


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="run `pmc-curate parse"):
        select(Workdir.of(tmp_path / "empty"), SampleConfig(size=5))


def test_cli(tmp_path: Path) -> None:
    from pipeline.cli import main

    wd = make_workdir(tmp_path)
    assert main(["sample", "--workdir", str(wd.root), "--size", "12", "--seed", "4"]) == 0
    assert pq.read_table(wd.sample).num_rows == 12


def test_uncertainty_strategy_asks_the_student_and_skips_annotated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The active-learning hook: the N most uncertain of a hash-ordered pool, never re-annotating."""

    wd = make_workdir(tmp_path)
    calls: list[list[str]] = []

    def uncertainty_scores(workdir: Workdir, paragraph_ids: list[str]) -> dict[str, float]:
        calls.append(list(paragraph_ids))
        return {i: (1.0 if i.startswith("PMC1003/") else 0.1) for i in paragraph_ids}

    from classifiers import uncertainty

    monkeypatch.setattr(uncertainty, "uncertainty_scores", uncertainty_scores)
    ann = wd.reset_table("annotations")
    pq.write_table(pa.table({"id": ["PMC1003/sec[0]/p[0]"]}), ann / "part-0.parquet")
    table, summary = select(wd, SampleConfig(size=5, seed=0, strategy="uncertainty", pool_factor=100))
    ids = table.column("id").to_pylist()
    assert len(ids) == 5 and all(i.startswith("PMC1003/") for i in ids)
    assert "PMC1003/sec[0]/p[0]" not in ids and "PMC1003/sec[0]/p[0]" not in calls[0]
    assert set(table.column("strategy").to_pylist()) == {"uncertainty"}
