"""Golden tests on real PMC-OA articles (../shared/data/pmc-oa-sample; skipped when absent)."""

from __future__ import annotations

import csv
import re

import pytest
from lxml import etree

from pipeline.jats import parse_article
from pipeline.jats.text import inline_text

pytestmark = pytest.mark.shared_data

# file -> (n kept paragraphs at 64 tokens, n short dropped, first paths + first words, last path)
GOLDEN = {
    # 2026 Wiley: <p> directly in body, "References" sec and "Associated Data" duplicate inside <body>.
    "PMC13249065.xml": (12, 5, [("p[0]", "Equity, diversity and inclusion (EDI) in"),
                                ("sec[0]/p[0]", "Peer review is fundamental to ensuring"),
                                ("sec[1]/p[0]", "According to the Editors' Association of")], "sec[6]/p[0]"),
    # NCBI efetch <pmc-articleset> wrapper, PMCID without the PMC prefix.
    "PMC8435807.xml": (1, 0, [("p[0]", "This article was originally published with")], "p[0]"),
    # F1000: 7 referee-report sub-articles, not counted as body text.
    "PMC6081979.xml": (20, 2, [("sec[0]/p[0]", "Despite the high relevance of food"),
                               ("sec[0]/p[1]", "As part of a continued effort"),
                               ("sec[1]/sec[0]/p[0]", "Four chemical databases were homogeneously curated")], "sec[4]/p[3]"),
    # NLM 2.2 archivearticle with a default namespace.
    "PMC3357053.nxml": (33, 7, [("sec[0]/p[0]", "Rice represents a major food source"),
                                ("sec[0]/p[1]", "Heat shock factors (HSFs) are transcription"),
                                ("sec[0]/p[2]", "Besides stress, there is evidence for")], "sec[8]/p[0]"),
    # <p> directly under <body>, no sections.
    "PMC2755648.xml": (22, 1, [("p[0]", "PCP signaling is essential for a"), ("p[1]", "We asked if PCP effectors were"),
                               ("p[2]", "All homozygous mutant mice displayed severe")], "p[21]"),
}


def parse(shared_sample, name, **kw):
    return parse_article((shared_sample / name).read_bytes(), name, **kw)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_articles(shared_sample, name):
    n, short, firsts, last = GOLDEN[name]
    r = parse(shared_sample, name)
    got_first = [(p.path, " ".join(p.text.split()[:6])) for p in r.paragraphs[: len(firsts)]]
    assert (r.article.n_paragraphs, r.article.n_short_paragraphs, got_first, r.paragraphs[-1].path) == (n, short, firsts, last)
    assert r.article.pmcid == name.split(".")[0]
    assert all(p.n_tokens >= 64 and p.language == "en" for p in r.paragraphs)


def test_references_and_associated_data_in_body_excluded(shared_sample):
    for name in ("PMC13239955.xml", "PMC13249065.xml", "PMC13254229.xml"):
        r = parse(shared_sample, name, min_tokens=0)
        titles = {p.section_title or "" for p in r.paragraphs}
        assert not any(t.lower().startswith(("references", "associated data")) for t in titles), name


def test_article_without_body_has_zero_paragraphs(shared_sample):
    r = parse(shared_sample, "PMC3388970.xml", min_tokens=0)
    assert r.article.n_paragraphs == 0 and r.paragraphs == []
    assert r.article.n_sub_articles == 107  # meeting abstracts, none counted as body text


def test_sub_article_text_not_counted(shared_sample):
    raw = (shared_sample / "PMC6081979.xml").read_bytes()
    root = etree.fromstring(raw, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
    sub_texts = {inline_text(p) for sa in root.iter("sub-article") for p in sa.iter("p")}
    r = parse_article(raw, "PMC6081979.xml", min_tokens=0)
    assert not sub_texts & {p.text for p in r.paragraphs}


@pytest.fixture(scope="module")
def whole_sample(shared_sample):
    rows = list(csv.DictReader((shared_sample / "MANIFEST.tsv").read_text().splitlines(), delimiter="\t"))
    return [(row, parse(shared_sample, row["file"], min_tokens=0)) for row in rows]


def test_whole_sample_parses_with_manifest_types_and_ids(whole_sample):
    assert len(whole_sample) == 83
    for row, r in whole_sample:
        assert r.article.pmcid == row["pmcid"]
        assert r.article.article_type == row["article_type"]
        assert (r.article.n_paragraphs > 0) == (row["has_body"] == "yes"), row["file"]
        assert r.article.dtd_version is None or r.article.dtd_version


def test_whole_sample_text_is_clean(whole_sample):
    for _, r in whole_sample:
        ids = [p.id for p in r.paragraphs]
        assert len(ids) == len(set(ids))
        for p in r.paragraphs:
            assert p.text == p.text.strip() and "  " not in p.text and "\u2028" not in p.text and "\n" not in p.text
            assert re.fullmatch(r"([a-z\-]+\[\d+\]/)*(p|list-item)\[\d+\]", p.path), p.path


def test_italic_words_never_glued_in_real_text(whole_sample, shared_sample):
    """Every `<italic>X</italic> word` in a real body paragraph reads "X word" in our text."""
    checked = 0
    for row, r in whole_sample:
        texts = {p.text for p in r.paragraphs}
        blob = "\n".join(texts)
        root = etree.fromstring((shared_sample / row["file"]).read_bytes(),
                                etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
        body = next((b for b in root.iter() if isinstance(b.tag, str) and b.tag.endswith("body")), None)
        if body is None:
            continue
        for it in body.iter("{*}italic"):
            t, tail = (it.text or "").strip(), it.tail or ""
            if len(it) or not t or not tail[:1].isspace() or not tail.strip()[:1].isalpha():
                continue
            nxt = tail.split()[0]
            if f"{t} {nxt}" in blob:
                checked += 1
            else:
                assert f"{t}{nxt}" not in blob, (row["file"], t, nxt)
    assert checked > 500
