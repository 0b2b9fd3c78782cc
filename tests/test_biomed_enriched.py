"""Paragraph rows against the published Biomed-Enriched tool (PyPI biomed-enriched==0.1.0).

The oracle is their `_extractor.py`, loaded by file path: the package's __init__ imports `datasets`,
which this project does not install (Makefile). Skipped when the package is not there.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest

from pipeline.core.errors import RecordError
from pipeline.core.records import Reject
from pipeline.jats import parse_article, parse_articles
from pipeline.jats.biomed_enriched import be_base, be_render, be_resolve, be_text, steps_ok
from pipeline.jats.meta import find_articles
from pipeline.jats.text import local_name
from pipeline.jats.xml import parse_xml_with_doctype


def _load_oracle():
    try:
        spec = importlib.util.find_spec("biomed_enriched")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "_extractor.py"
    if not path.is_file():
        return None
    ospec = importlib.util.spec_from_file_location("biomed_enriched_extractor_oracle", path)
    mod = importlib.util.module_from_spec(ospec)
    ospec.loader.exec_module(mod)
    return mod


ORACLE = _load_oracle()
# The oracle is part of the test install (`make install`); a suite without it tests nothing here.
assert ORACLE is not None, "biomed-enriched (the oracle) is not installed: `pip install --no-deps biomed-enriched==0.1.0`"


def oracle(path: Path):
    with warnings.catch_warnings():  # their `find(...) or getroot()` draws lxml's FutureWarning
        warnings.simplefilter("ignore")
        return ORACLE._XmlParagraphExtractor(path)


def oracle_extract(ex, path: str) -> str | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ex.extract(path)


def our_element(body, path: str):
    """The element our path names: name[i] = i-th child with that local name (body.py)."""
    cur = body
    for step in path.split("/"):
        name, _, idx = step[:-1].partition("[")
        cur = [c for c in cur if isinstance(c.tag, str) and local_name(c.tag) == name][int(idx)]
    return cur


# ---------------------------------------------------------------- the real sample, parsed once


@pytest.fixture(scope="module")
def sample(shared_sample):
    """file -> (parse results, our text of each kept path per article, oracle text, be_render)."""
    out = {}
    for f in sorted(p for p in shared_sample.iterdir() if p.suffix in (".xml", ".nxml")):
        data = f.read_bytes()
        results = parse_articles(data, f.name)
        root, _ = parse_xml_with_doctype(data, keep_comments=True)
        arts = find_articles(root)
        ox = oracle(f)
        rows = []
        for art, r in zip(arts, results, strict=True):
            if isinstance(r, Reject):
                continue
            body = art.find("{*}body")
            for p in r.paragraphs:
                rows.append((r.article, p, be_text(our_element(body, p.path)), oracle_extract(ox, p.path)))
        rendered = be_render(data, [p.path for _, p, _, _ in rows])
        out[f.name] = (results, rows, rendered)
    return out


@pytest.mark.shared_data
def test_be_addressable_iff_their_tool_returns_our_element(sample):
    n = n_true = 0
    for name, (_, rows, _) in sample.items():
        for _, p, ours, theirs in rows:
            n += 1
            n_true += bool(p.be_addressable)
            assert p.be_addressable is (theirs == ours), (name, p.path, p.be_addressable, theirs, ours)
    assert n > 2000 and 0.9 < n_true / n < 1  # 1986 of 2077 when written


@pytest.mark.shared_data
def test_be_render_is_their_output_at_every_path(sample):
    for name, (_, rows, rendered) in sample.items():
        for _, p, _, theirs in rows:
            assert rendered[p.path] == theirs, (name, p.path)
            if not steps_ok(p.path):
                assert theirs is None and not p.be_addressable, (name, p.path)


@pytest.mark.shared_data
def test_every_paragraph_carries_its_articles_pmid(sample):
    n_with = 0
    for _, (results, rows, _) in sample.items():
        for art, p, _, _ in rows:
            assert p.pmid == art.pmid
        n_with += sum(1 for r in results if not isinstance(r, Reject) and r.article.pmid)
    assert n_with > 40  # 48 of 83 when written


@pytest.mark.shared_data
def test_adjacent_citations_in_the_sample_are_separated(sample):
    text = {(name, p.path): p.text for name, (_, rows, _) in sample.items() for _, p, _, _ in rows}
    assert "peninsula.[1,2] We" in text[("PMC3841568.xml", "sec[0]/p[0]")]
    s = text[("PMC3841568.xml", "sec[2]/p[0]")]
    assert "established.[1,3] HRD" in s and "anomalies.[1,2,4,5] " in s and "[13]" not in s
    assert "Dittmar et al. 2008a, 2014;" in text[("PMC13255524.xml", "sec[0]/sec[2]/p[0]")]


# ---------------------------------------------------------------- hand-written cases

FRONT = (b'<front><article-meta><article-id pub-id-type="pmc">%s</article-id>'
         b'<article-id pub-id-type="pmid">%s</article-id></article-meta></front>')
BODY = (b"<body><sec><title>Intro</title><p>First <italic>para</italic>graph.</p>"
        b"<list><list-item><p>An item.</p></list-item></list><boxed-text><p>Boxed.</p></boxed-text></sec></body>")


def check(tmp_path, data: bytes, **kw):
    """Parse with ours and with theirs; every row's be_addressable must agree with their output."""
    f = tmp_path / "a.xml"
    f.write_bytes(data)
    results = parse_articles(data, "PMC1.xml", min_tokens=0, **kw)
    ox = oracle(f)
    root, _ = parse_xml_with_doctype(data, keep_comments=True)
    got = []
    for art, r in zip(find_articles(root), results, strict=True):
        body = art.find("{*}body")
        for p in r.paragraphs:
            ours = be_text(our_element(body, p.path))
            assert p.be_addressable is (oracle_extract(ox, p.path) == ours), p.path
            assert be_render(data, [p.path])[p.path] == oracle_extract(ox, p.path)
            got.append((r.article.pmcid, p.path, p.be_addressable, p.pmid))
    return got


def test_hyphenated_steps_are_not_addressable(tmp_path):
    got = check(tmp_path, b"<article>" + FRONT % (b"1", b"11") + BODY + b"</article>")
    assert got == [("PMC1", "sec[0]/p[0]", True, "11"),
                   ("PMC1", "sec[0]/list[0]/list-item[0]/p[0]", False, "11"),
                   ("PMC1", "sec[0]/boxed-text[0]/p[0]", False, "11")]


def test_default_namespace_file_is_not_addressable(tmp_path):
    doc = b'<article xmlns="http://jats.nlm.nih.gov/ns/archiving/1.0/">' + FRONT % (b"1", b"11") + BODY + b"</article>"
    got = check(tmp_path, doc)
    assert [a for _, _, a, _ in got] == [False, False, False]
    root, _ = parse_xml_with_doctype(doc)
    assert be_base(root) is root and be_resolve(root, "sec[0]/p[0]") is None


def test_article_in_a_namespace_with_a_plain_body_is_theirs(tmp_path):
    # Their `.//body` finds a body that is in no namespace; a namespaced <p> among its children is
    # counted by our path (local names) but not by their findall("p").
    doc = (b'<article xmlns="urn:jats">' + FRONT % (b"1", b"11") +
           b'<body xmlns=""><p>A.</p><j:p xmlns:j="urn:jats">B.</j:p><p>C.</p></body></article>')
    assert check(tmp_path, doc) == [("PMC1", "p[0]", True, "11"), ("PMC1", "p[1]", False, "11"),
                                    ("PMC1", "p[2]", False, "11")]


def test_foreign_namespaced_paragraph_shifts_their_count(tmp_path):
    doc = (b"<article>" + FRONT % (b"1", b"11") +
           b'<body><p>A.</p><x:p xmlns:x="urn:other">B.</x:p><p>C.</p></body></article>')
    assert [a for _, _, a, _ in check(tmp_path, doc)] == [True, False, False]


def test_missing_main_body_their_base_is_the_sub_articles(tmp_path):
    doc = (b"<article>" + FRONT % (b"1", b"11") + b"<back/><sub-article><front-stub/>"
           b"<body><p>Reply text.</p></body></sub-article></article>")
    assert parse_article(doc, "PMC1.xml", min_tokens=0).paragraphs == []  # we never read sub-articles
    root, _ = parse_xml_with_doctype(doc)
    assert local_name(be_base(root).getparent().tag) == "sub-article"
    f = tmp_path / "a.xml"
    f.write_bytes(doc)
    assert be_render(doc, ["p[0]"]) == {"p[0]": "Reply text."} == {"p[0]": oracle_extract(oracle(f), "p[0]")}
    # In a wrapper, the first article's sub-article body is then their base for every article.
    wrapper = (b"<pmc-articleset><article>" + FRONT % (b"1", b"11") + b"<sub-article><body><p>Reply.</p></body>"
               b"</sub-article></article><article>" + FRONT % (b"2", b"22") + b"<body><p>Own text.</p></body>"
               b"</article></pmc-articleset>")
    assert check(tmp_path, wrapper) == [("PMC2", "p[0]", False, "22")]


def test_only_the_first_article_of_a_wrapper_is_addressable(tmp_path):
    doc = (b"<pmc-articleset><article>" + FRONT % (b"1", b"11") + b"<body><p>One.</p></body></article>"
           b"<article>" + FRONT % (b"2", b"22") + b"<body><p>Two.</p><p>Three.</p></body></article></pmc-articleset>")
    assert check(tmp_path, doc) == [("PMC1", "p[0]", True, "11"), ("PMC2", "p[0]", False, "22"),
                                    ("PMC2", "p[1]", False, "22")]


def test_empty_first_body_makes_the_root_their_base():
    doc = b"<article><body/><sub-article><body><p>x</p></body></sub-article></article>"
    root, _ = parse_xml_with_doctype(doc)
    assert be_base(root) is root and be_resolve(root, "p[0]") is None


def test_be_text_is_their_rule_on_the_untouched_element(tmp_path):
    doc = (b"<article><body><p>CD4<sup>+</sup> cells<!-- c -->seen [<xref ref-type='bibr'>1</xref>]"
           b"<fn><p>note</p></fn></p><p> </p><p/></body></article>")
    f = tmp_path / "a.xml"
    f.write_bytes(doc)
    paths = ["p[0]", "p[1]", "p[2]", "p[3]", "sec[0]", "p[x]", ""]
    ox = oracle(f)
    assert be_render(doc, paths) == {p: oracle_extract(ox, p) for p in paths}
    assert be_render(doc, ["p[0]", "p[1]", "p[2]"]) == {"p[0]": "CD4 + cells seen [ 1 ] note", "p[1]": "", "p[2]": None}


def test_internal_entities_are_the_one_difference(tmp_path):
    doc = b'<!DOCTYPE article [<!ENTITY x "expanded">]><article><body><p>An &x; entity.</p></body></article>'
    f = tmp_path / "a.xml"
    f.write_bytes(doc)
    assert oracle_extract(oracle(f), "p[0]") == "An expanded entity."
    with pytest.raises(RecordError):  # ours never expands entities: the file is rejected
        be_render(doc, ["p[0]"])
