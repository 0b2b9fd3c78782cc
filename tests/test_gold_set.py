"""The hand-labelled gold set (prompts/biomed-labels/gold.tsv): format, vocabulary, coverage, ids.

The gold set is what `pmc-curate annotate --gold` measures a teacher against, so a malformed row,
a label outside the schema or an id the parser does not produce would silently shrink or skew
every agreement figure. These tests fail on each of those.
"""

from __future__ import annotations

import csv
import importlib.util
import inspect
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

from pipeline.core.labels import DOCUMENT_TYPES, DOMAINS, SCORE_MAX, SCORE_MIN

REPO = Path(__file__).resolve().parent.parent
GOLD = REPO / "prompts" / "biomed-labels" / "gold.tsv"
EXTRACTOR = REPO / "prompts" / "biomed-labels" / "gold" / "tools" / "extract_candidates.py"
HEADER = ["id", "document_type", "domain", "educational_score", "note"]
ID_PATTERN = r"^PMC\d+/((sec\[\d+\]/)*p\[\d+\])$"


def read_gold(path: Path = GOLD) -> list[dict[str, str]]:
    """Rows of the gold TSV as dicts; raises AssertionError on a ragged row."""
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        assert header == HEADER, f"gold.tsv header is {header}, expected {HEADER}"
        rows = []
        for lineno, fields in enumerate(reader, start=2):
            assert len(fields) == len(HEADER), f"gold.tsv line {lineno}: {len(fields)} fields, expected {len(HEADER)}"
            rows.append(dict(zip(HEADER, fields, strict=True)))
    return rows


@pytest.fixture(scope="module")
def gold() -> list[dict[str, str]]:
    return read_gold()


def test_format_and_vocabulary(gold: list[dict[str, str]]) -> None:
    problems = []
    for r in gold:
        if not re.match(ID_PATTERN, r["id"]):
            problems.append(f"{r['id']}: id is not PMC<digits>/sec[i]/.../p[j]")
        if r["document_type"] not in DOCUMENT_TYPES:
            problems.append(f"{r['id']}: document_type {r['document_type']!r} not in {DOCUMENT_TYPES}")
        if r["domain"] not in DOMAINS:
            problems.append(f"{r['id']}: domain {r['domain']!r} not in {DOMAINS}")
        score = r["educational_score"]
        if not score.isdigit() or not SCORE_MIN <= int(score) <= SCORE_MAX:
            problems.append(f"{r['id']}: educational_score {score!r} not an integer in [{SCORE_MIN}, {SCORE_MAX}]")
        if not r["note"].strip():
            problems.append(f"{r['id']}: empty note")
        if len(r["note"]) > 200:
            problems.append(f"{r['id']}: note longer than 200 chars (paragraph text must not be stored here)")
    assert not problems, "\n".join(problems)


def test_ids_unique(gold: list[dict[str, str]]) -> None:
    dupes = [i for i, n in Counter(r["id"] for r in gold).items() if n > 1]
    assert not dupes, f"duplicate gold ids: {dupes}"


def test_size_and_coverage(gold: list[dict[str, str]]) -> None:
    assert len(gold) >= 150
    articles = {r["id"].split("/", 1)[0] for r in gold}
    assert len(articles) >= 40
    # Every label value is represented, so per-class agreement figures are defined.
    assert set(DOCUMENT_TYPES) <= {r["document_type"] for r in gold}
    assert set(DOMAINS) <= {r["domain"] for r in gold}
    assert set(range(SCORE_MIN, SCORE_MAX + 1)) <= {int(r["educational_score"]) for r in gold}
    assert sum(r["document_type"] == "Clinical case" for r in gold) >= 25


def test_read_gold_rejects_ragged_row(tmp_path: Path) -> None:
    bad = tmp_path / "gold.tsv"
    bad.write_text("\t".join(HEADER) + "\nPMC1/p[0]\tStudy\tclinical\t3\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="4 fields"):
        read_gold(bad)


def _sample_files(folder: Path) -> dict[str, Path]:
    files = [f for f in folder.iterdir() if f.suffix in (".xml", ".nxml")]
    return {f.name.split(".")[0]: f for f in files}


def test_ids_exist_in_extractor_output(gold: list[dict[str, str]], shared_sample: Path) -> None:
    """The labelling tool (not the package) finds every gold paragraph: guards against typos in ids."""
    spec = importlib.util.spec_from_file_location("extract_candidates", EXTRACTOR)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve annotations through sys.modules
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.modules.pop(spec.name, None)
    files = _sample_files(shared_sample)
    wanted = {r["id"] for r in gold}
    found: set[str] = set()
    for pmcid in {i.split("/", 1)[0] for i in wanted}:
        assert pmcid in files, f"gold article {pmcid} is not in the shared sample"
        found |= {c.id for c in mod.candidates(files[pmcid], min_words=0)}
    assert wanted <= found, f"gold ids not found by the extractor: {sorted(wanted - found)}"


def test_ids_exist_in_parser_output(gold: list[dict[str, str]], shared_sample: Path) -> None:
    """Every gold id is a paragraph id produced by the parse stage, so gold joins parsed data."""
    from pipeline.jats import parse_article  # the parse stage's pure function: part of the package
    kwargs = {"min_tokens": 0} if "min_tokens" in inspect.signature(parse_article).parameters else {}
    files = _sample_files(shared_sample)
    by_article: dict[str, set[str]] = {}
    for r in gold:
        by_article.setdefault(r["id"].split("/", 1)[0], set()).add(r["id"])
    missing = []
    for pmcid, ids in sorted(by_article.items()):
        path = files[pmcid]
        article = parse_article(path.read_bytes(), path.name, **kwargs)
        produced = {p.id for p in article.paragraphs}
        missing += sorted(ids - produced)
    assert not missing, f"{len(missing)} gold ids not produced by parse_article: {missing[:20]}"


def test_gold_paragraphs_survive_default_length_filter(gold: list[dict[str, str]], shared_sample: Path) -> None:
    """Gold paragraphs are ones the pipeline would actually sample: none is dropped as too short."""
    from pipeline.jats import parse_article  # the parse stage's pure function: part of the package
    files = _sample_files(shared_sample)
    kept: set[str] = set()
    for pmcid in sorted({r["id"].split("/", 1)[0] for r in gold}):
        path = files[pmcid]
        kept |= {p.id for p in parse_article(path.read_bytes(), path.name).paragraphs}
    dropped = sorted(r["id"] for r in gold if r["id"] not in kept)
    assert not dropped, f"gold paragraphs dropped by parse_article's default min_tokens: {dropped}"
