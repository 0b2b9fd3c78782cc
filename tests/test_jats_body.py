"""Paragraph addressing (the path contract), what counts as body prose, wrappers, ids, min-tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from pipeline.core.errors import RecordError, RejectReason
from pipeline.core.records import Reject
from pipeline.jats import parse_article, parse_articles
from pipeline.jats.body import walk_body

FIX = Path(__file__).parent / "fixtures" / "jats"


def load(name: str, **kw: object):
    return parse_article((FIX / name).read_bytes(), name, min_tokens=0, **kw)


def test_paths_titles_and_text_of_the_inline_fixture():
    r = load("inline.xml")
    got = [(p.path, p.section_title, p.text) for p in r.paragraphs]
    assert got == [
        ("p[0]", None, "The E. coli strain K-12 grew at 37°C in 10^6 CFU/mL with CD4+ cells and H2O."),
        ("sec[0]/p[0]", "Introduction", "Earlier work [1,2] and a review [3] agree (Smith et al., 2010)."),
        ("sec[0]/p[1]", "Introduction", "Patients were enrolled; see Figure 1."),
        ("sec[1]/sec[0]/p[0]", "Methods > Model", "We fit $y = \\beta x$ by least squares, and p < 0.05 was significant."),
        ("sec[1]/sec[0]/p[1]", "Methods > Model", "Table 1 lists doses."),
        ("sec[1]/sec[0]/p[2]", "Methods > Model", "Steps: mix heat then cool."),
        ("sec[2]/boxed-text[0]/p[0]", "Results > Box 1: Key points", "Boxed prose counts."),
        ("sec[2]/list[0]/list-item[0]/p[0]", "Results", "first item"),
        ("sec[2]/list[0]/list-item[1]/p[0]", "Results", "second item"),
        ("sec[2]/list[0]/list-item[2]/p[0]", "Results", "third item with spaces"),
        ("sec[2]/p[0]", "Results", "Non breaking spaces collapse."),
    ]
    assert all(p.id == f"PMC9000001/{p.path}" and p.article_id == "PMC9000001" for p in r.paragraphs)


def test_excluded_content_never_appears():
    r = load("inline.xml")
    blob = " ".join(p.text for p in r.paragraphs)
    for s in ["caption", "cell text", "footnote text", "Ref one", "Ref two", "Thanks", "Abstract text", "traduit", "$z^2$"]:
        assert s not in blob


def test_index_counts_skipped_same_name_siblings():
    body = etree.fromstring(
        "<body><sec><title>References</title><p>ref</p></sec><p>short</p><sec><title>B</title>"
        "<p/><p><fig/></p><p>third</p></sec><p>last</p></body>"
    )
    got = [(p.path, p.text) for p in walk_body(body)]
    # sec[0] (references) and the empty p's are skipped but still counted in the indices.
    assert got == [("p[0]", "short"), ("sec[1]/p[2]", "third"), ("p[1]", "last")]


def test_disp_quote_and_statement_paragraphs():
    body = etree.fromstring(
        "<body><sec><title>Findings</title><disp-quote><p>I felt heard.</p></disp-quote>"
        "<statement><label>Theorem 1</label><title>Bound</title><p>It holds.</p></statement></sec></body>"
    )
    got = [(p.path, p.section_title, p.text) for p in walk_body(body)]
    assert got == [
        ("sec[0]/disp-quote[0]/p[0]", "Findings", "I felt heard."),
        ("sec[0]/statement[0]/p[0]", "Findings > Bound", "It holds."),
    ]


@pytest.mark.parametrize("title", ["References", "REFERENCES", "Literature Cited", "Bibliography", "5. References"])
def test_reference_sections_in_body_skipped(title):
    body = etree.fromstring(f"<body><sec><title>{title}</title><p>Smith J. A paper. 2001.</p></sec></body>")
    assert walk_body(body) == []


def test_associated_data_duplicate_section_skipped():
    body = etree.fromstring(
        '<body><sec><title>Data</title><p>Data on request.</p></sec>'
        '<sec sec-type="associated-data"><title>Associated Data</title><sec><title>Data</title><p>Data on request.</p></sec></sec></body>'
    )
    assert [p.path for p in walk_body(body)] == ["sec[0]/p[0]"]


def test_pmc_articleset_wrapper_and_pmcid_without_prefix():
    r = load("wrapped_noprefix.xml")
    assert r.article.pmcid == "PMC9000002"
    assert r.paragraphs[0].id == "PMC9000002/p[0]"
    assert r.article.license == "CC BY" and r.article.commercial is True
    assert r.article.dtd_version is None  # the DOCTYPE names the wrapper, not the article's DTD


def test_oai_pmh_envelope_with_namespaced_jats():
    r = load("oai_namespaced.xml")
    assert r.article.pmcid == "PMC9000003"
    assert r.article.article_type == "case-report"
    assert [(p.path, p.section_title, p.text) for p in r.paragraphs] == [
        ("sec[0]/p[0]", "Case", "A 62-year-old man presented with fever and x cough.")
    ]
    assert r.article.license == "CC BY"  # stated only in the copyright statement


def test_article_without_body_is_an_article_with_zero_paragraphs():
    r = load("nobody.xml")
    assert r.article.pmcid == "PMC9000004"
    assert r.paragraphs == [] and r.article.n_paragraphs == 0
    assert r.article.license == "none" and r.article.commercial is False
    assert r.article.language is None


def test_wrapper_with_two_articles_and_one_without_pmcid():
    results = parse_articles((FIX / "two_articles.xml").read_bytes(), "two_articles.xml", min_tokens=0)
    assert results[0].article.pmcid == "PMC9000005"
    assert isinstance(results[1], Reject)
    assert results[1].reason == RejectReason.NO_PMCID.value and results[1].source == "two_articles.xml#article[1]"
    with pytest.raises(RecordError) as ei:
        parse_article((FIX / "two_articles.xml").read_bytes(), "two_articles.xml")
    assert ei.value.reason == RejectReason.NOT_AN_ARTICLE


def test_pmcid_from_file_name_when_xml_has_none():
    data = b"<article><body><p>Text.</p></body></article>"
    assert parse_article(data, "pkg.tar.gz!PMC000xxx/PMC4242.nxml", min_tokens=0).article.pmcid == "PMC4242"
    with pytest.raises(RecordError) as ei:
        parse_article(data, "article.xml", min_tokens=0)
    assert ei.value.reason == RejectReason.NO_PMCID


def test_metadata_fields():
    a = load("inline.xml").article
    assert (a.pmid, a.doi, a.year, a.journal, a.article_type) == ("39000001", "10.0000/test.1", 2023, "Journal of Parser Tests", "research-article")
    assert a.title == "Inline markup in Escherichia coli reports"
    assert a.authors == ["Ada Curie", "The Parser Group"]
    assert a.license == "CC BY-NC-ND" and a.commercial is False
    assert a.license_url == "https://creativecommons.org/licenses/by-nc-nd/4.0/"
    assert a.n_sub_articles == 1 and a.dtd_version == "1.3" and a.language == "en"
    assert a.article_url == "https://pmc.ncbi.nlm.nih.gov/articles/PMC9000001/"


def test_min_tokens_drops_and_counts_short_paragraphs():
    all_ = load("inline.xml")
    r = parse_article((FIX / "inline.xml").read_bytes(), "inline.xml", min_tokens=10)
    assert all(p.n_tokens >= 10 for p in r.paragraphs)
    assert r.article.n_paragraphs == len(r.paragraphs)
    assert r.article.n_short_paragraphs == len(all_.paragraphs) - len(r.paragraphs) > 0
    assert r.n_body_paragraphs == len(all_.paragraphs)


def test_token_counts_use_the_real_tokenizer_without_truncation():
    from pipeline.jats.tokens import count_tokens

    long = "word " * 600
    assert count_tokens(["The E. coli strain", long]) == [5, 600]  # the / e / . / coli / strain


def test_language_per_paragraph_from_bundled_model():
    from pipeline.jats.lang import detect_languages

    got = detect_languages([
        "Le patient a été hospitalisé pour une fièvre persistante et une toux productive depuis deux semaines.",
        "The patient was admitted with persistent fever and a productive cough lasting two weeks.",
        "",
    ])
    assert got[0][0] == "fr" and got[1][0] == "en" and got[2] == (None, None)
    assert 0.5 < got[0][1] <= 1.0
