"""The decontaminate stage on the DirectRunner: one benchmark file per format with items planted verbatim,
paraphrased and short; PubMedQA matched by PMID too; n-grams common in the corpus ignored; curate's
`decontaminate` parameter drops exactly the matched paragraphs and reports them per benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import cli
from pipeline.core.errors import ConfigError
from pipeline.core.records import Paragraph, arrow_schema, as_row
from pipeline.core.workdir import Workdir
from pipeline.dedup.contamination import RULE_PMID
from pipeline.stages.curate import stage as C
from pipeline.stages.decontaminate import DecontaminateConfig, parse_spec, run_decontaminate
from pipeline.stages.dedup.config import DedupConfig
from pipeline.stages.dedup.stage import run_dedup
from tests.dedup_fixtures import distinct_sentence
from tests.dedup_stage_helpers import PLANTED, _article, write_workdir
from tests.test_decontaminate_benchmarks import write_jsonl, write_parquet
from tests.test_decontaminate_match import COMMON, EXPECTED, MEDMCQA, MEDQA, MMLU, PARAGRAPHS, PUBMEDQA

PUBMEDQA_PMID = "31415926"


def corpus_workdir(root: Path, shards: int = 1) -> Workdir:
    """One article per paragraph of PARAGRAPHS and COMMON; the long-answer paragraph's article carries the
    PubMedQA item's PMID and a second, clean paragraph."""
    texts = {**PARAGRAPHS, **COMMON, "pmid-second": distinct_sentence(77)}
    arts, paras = [], []
    for i, key in enumerate(texts):
        if key == "pmid-second":
            continue
        pmcid = f"PMC{5000 + i}"
        arts.append(_article(pmcid, pmid=PUBMEDQA_PMID if key == "long-answer" else str(9000 + i)))
        keys = [key, "pmid-second"] if key == "long-answer" else [key]
        for j, k in enumerate(keys):
            paras.append(Paragraph(id=k, article_id=pmcid, path=f"p[{j}]", section_title=None, text=texts[k],
                                   n_tokens=len(texts[k].split()), language="en"))  # fmt: skip
    wd = Workdir.of(root)
    for name, rows, cls in (("articles", arts, type(arts[0])), ("paragraphs", paras, Paragraph)):
        d = wd.reset_table(name)
        per = -(-len(rows) // shards)
        for s in range(shards):
            pq.write_table(pa.Table.from_pylist([as_row(r) for r in rows[s * per : (s + 1) * per]], schema=arrow_schema(cls)),
                           d / f"part-{s}.parquet")  # fmt: skip
    return wd


@pytest.fixture(scope="module")
def benchmarks(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    d = tmp_path_factory.mktemp("bench")
    return [f"medqa={write_jsonl(d / 'medqa.jsonl', MEDQA)}", f"medmcqa={write_parquet(d / 'medmcqa.parquet', MEDMCQA)}",
            f"mmlu-genetics={write_parquet(d / 'mmlu.parquet', MMLU)}",
            f"pubmedqa={write_jsonl(d / 'pubmedqa.jsonl', PUBMEDQA)}"]  # fmt: skip


def found(wd: Workdir) -> set[tuple[str, str, str, str]]:
    return set(duckdb.sql(f"SELECT id, benchmark, item_id, rule FROM '{wd.glob('contamination')}'").fetchall())


def expected(mmlu: str = "mmlu-genetics") -> set[tuple[str, str, str, str]]:
    out = {(pid, mmlu if b == "mmlu" else b, item, rule) for pid, ms in EXPECTED.items() for b, item, rule in ms}
    return out | {("long-answer", "pubmedqa", PUBMEDQA_PMID, RULE_PMID), ("pmid-second", "pubmedqa", PUBMEDQA_PMID, RULE_PMID)}


def test_planted_items_match_exactly_and_common_ngrams_are_ignored(tmp_path: Path, benchmarks: list[str]) -> None:
    wd = corpus_workdir(tmp_path / "w")
    s = run_decontaminate(wd, DecontaminateConfig(workdir=str(wd.root), benchmarks=benchmarks), [])
    assert found(wd) == expected()  # paraphrases, the 3-word question and the 150 funding paragraphs: nothing
    assert s["contaminated_paragraphs"] == 5 and s["index"]["items"] == {"medqa": 2, "medmcqa": 3, "mmlu-genetics": 1, "pubmedqa": 1}
    assert s["by_benchmark"]["pubmedqa"]["pmid"] == {"rows": 2, "paragraphs": 2, "items": 1}
    assert json.loads((wd.stages / "decontaminate.json").read_text())["parameters"]["ngram_words"] == 13


def test_a_high_corpus_df_keeps_the_common_ngrams_and_shards_do_not_matter(tmp_path: Path, benchmarks: list[str]) -> None:
    wd = corpus_workdir(tmp_path / "w", shards=3)
    run_decontaminate(wd, DecontaminateConfig(workdir=str(wd.root), benchmarks=benchmarks, max_corpus_df=1000),
                      ["--direct_num_workers=2"])  # fmt: skip
    assert found(wd) == expected() | {(k, "pubmedqa", PUBMEDQA_PMID, "ngram") for k in COMMON}


def test_bad_benchmarks_name_the_field_or_the_format(tmp_path: Path, capsys) -> None:
    wd = corpus_workdir(tmp_path / "w")
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"query": "x", "answer": "y"}])
    with pytest.raises(ConfigError, match=r"record 1: no question field 'question' for benchmark format medqa"):
        run_decontaminate(wd, DecontaminateConfig(workdir=str(wd.root), benchmarks=[f"medqa={bad}"]), [])
    with pytest.raises(ConfigError, match="'usmle' names no format; known formats: medmcqa, medmcqa-original"):
        parse_spec(f"usmle={bad}")
    assert parse_spec("mmlu-anatomy=a.parquet") == ("mmlu-anatomy", "mmlu", "a.parquet")
    assert parse_spec("medmcqa-original=a.json") == ("medmcqa-original", "medmcqa-original", "a.json")
    assert parse_spec("usmle:medqa=a.jsonl") == ("usmle", "medqa", "a.jsonl")
    with pytest.raises(ConfigError, match="at least one --benchmark"):
        run_decontaminate(wd, DecontaminateConfig(workdir=str(wd.root)), [])
    with pytest.raises(ConfigError, match="run `pmc-curate parse` first"):
        run_decontaminate(Workdir.of(tmp_path / "e"), DecontaminateConfig(workdir=str(tmp_path / "e"), benchmarks=[f"medqa={bad}"]), [])
    assert cli.main(["decontaminate", "--workdir", str(wd.root), "--benchmark", f"medqa={bad}"]) != 0
    assert "no question field 'question'" in capsys.readouterr().err
    assert not wd.has_table("contamination")  # nothing was written


def test_curate_drops_the_contaminated_paragraphs_per_benchmark(tmp_path: Path) -> None:
    wd = write_workdir(tmp_path / "w", labels={})
    bench = write_jsonl(tmp_path / "pqa.jsonl", [{"pubid": 4000, "question": "Does the new regimen sustain remission?",
                                                  "long_answer": PLANTED}])  # fmt: skip
    assert cli.main(["decontaminate", "--workdir", str(wd.root), "--benchmark", f"pubmedqa={bench}"]) == 0
    run_dedup(wd, DedupConfig(workdir=str(wd.root)), [])
    m = C.curate(C.CurateConfig(workdir=str(wd.root), recipe="encoder", export=False,
                                params=["decontaminate=true", "dedup=near"]))  # fmt: skip
    d = m["decontamination"]
    # PMC400's two paragraphs: one by the planted long answer and the PMID, the other by the PMID only
    assert d["removed"]["paragraphs"] == 2 and d["by_benchmark"]["pubmedqa"]["paragraphs"] == 2
    assert d["removed"]["n_tokens"] == d["by_benchmark"]["pubmedqa"]["n_tokens"] > 0
    assert m["stats"]["rows"] == 26 - 7 - 2
    assert d["stage"]["benchmarks"][0]["format"] == "pubmedqa"
    assert "benchmark contamination: 2 paragraphs" in (wd.subsets / "encoder" / "README.md").read_text()
