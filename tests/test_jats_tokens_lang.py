"""Token counts (exact fast path), language ID with no network, and the <back>-skipping parse."""

from __future__ import annotations

import socket

import pytest

from pipeline.jats import extract_articles
from pipeline.jats.cut import without_back
from pipeline.jats.tokens import count_tokens, count_tokens_reference
from pipeline.jats.xml import parse_xml_with_doctype

TRICKY = [
    "Café ÉCOLE naïve", "ΑΣ ΣΟΣ ends in sigma", "soft\u00adhyphen", "zero\u200bwidth", "中文字符 test",
    "İstanbul", "µm α-helix 37°C ±2", "ﬁbrosis ligature", "Ⅻ roman", "a\x7fb", "x\u0301y", "Ǆ dz",
    "ｆｕｌｌ width", "Å ångström", "ß STRASSE ẞ", "plain ascii, with (punctuation) and CAPS.", "tab\there",
]


def test_fast_path_counts_equal_the_unmodified_tokenizer():
    assert count_tokens(TRICKY) == count_tokens_reference(TRICKY)


@pytest.mark.shared_data
def test_fast_path_counts_equal_on_real_paragraphs(shared_sample):
    texts = [p.text for f in sorted(shared_sample.glob("*.*ml"))[:40]
             for ex in extract_articles(f.read_bytes(), f.name) for p in ex.paragraphs]
    assert len(texts) > 500
    assert count_tokens(texts) == count_tokens_reference(texts)


def test_language_id_needs_no_network(monkeypatch):
    import pipeline.jats.lang as lang

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(lang, "_model", None)  # force the fastText fallback model to load now
    assert lang.detect_languages(["Ceci est un paragraphe rédigé en français, sans ambiguïté aucune."])[0][0] == "fr"
    assert lang._fasttext("Dies ist ein deutscher Satz über Patienten mit Fieber.")[0] == "de"
    assert "pycld2" in lang.language_id_name() and "lid.176.ftz" in lang.language_id_name()


DOC = (b'<article><front><article-meta><article-id pub-id-type="pmc">1</article-id></article-meta></front>'
       b"<body><p>Body text.</p></body>%s<back><ref-list><ref>R</ref></ref-list></back>"
       b'<sub-article><body><p>x</p></body><back><p>sub back</p></back></sub-article></article>')


def test_without_back_cuts_only_the_main_back():
    short = without_back(DOC % b"")
    assert b"<ref-list>" not in short and b"sub back" in short


@pytest.mark.parametrize("trap", [b"<!-- a <back> in a comment -->", b"<![CDATA[ <back> ]]>"])
def test_without_back_refuses_when_unsure(trap):
    doc = DOC.replace(b"<p>Body text.</p>", b"<p>Body text." + trap + b"</p>") % b""
    assert without_back(doc) is None  # the first "<back" is inside a comment / CDATA: no cut
    root, _ = parse_xml_with_doctype(doc, skip_back=True)
    assert root.find("back") is not None and root.find("body/p").text.startswith("Body text.")


@pytest.mark.shared_data
def test_skipping_back_changes_no_paragraph(shared_sample):
    from pipeline.jats import _extract_one  # the same code path, given the full tree
    from pipeline.jats.meta import find_articles

    for f in sorted(shared_sample.glob("*.*ml")):
        data = f.read_bytes()
        fast = extract_articles(data, f.name)[0]
        root, doctype = parse_xml_with_doctype(data, skip_back=False)
        full = _extract_one(find_articles(root)[0], f.name, doctype)
        assert [(p.path, p.text) for p in fast.paragraphs] == [(p.path, p.text) for p in full.paragraphs], f.name
        assert fast.article == full.article, f.name


def test_shrink_cuts_back_floats_and_sub_articles_and_counts_them():
    from pipeline.jats.cut import SHRINK, _cut

    doc = DOC % b"<floats-group><fig><caption><p>c</p></caption></fig></floats-group>"
    short, n_sub = _cut(doc, SHRINK)
    assert n_sub == 1
    assert b"<ref-list>" not in short and b"floats-group" not in short and b"sub back" not in short
    assert b"<p>Body text.</p>" in short and short.endswith(b"</article>")


def test_shrink_handles_nested_sub_articles_and_refuses_comments():
    from pipeline.jats.cut import SHRINK, _cut

    nested = b"<article><body><p>x</p></body><sub-article><sub-article><body/></sub-article></sub-article></article>"
    assert _cut(nested, SHRINK) == (b"<article><body><p>x</p></body></article>", 1)
    commented = b"<article><body><p>x</p></body><!-- <back> --><back><p>y</p></back></article>"
    assert _cut(commented, SHRINK) is None
    from pipeline.jats import parse_article

    r = parse_article(nested.replace(b"<article>", b'<article><front><article-meta><article-id pub-id-type="pmc">5</article-id></article-meta></front>', 1), "x", min_tokens=0)
    assert r.article.n_sub_articles == 1 and [p.text for p in r.paragraphs] == ["x"]


def test_sub_articles_counted_per_article_in_a_wrapper():
    from pipeline.jats import parse_articles

    art = ('<article><front><article-meta><article-id pub-id-type="pmc">{n}</article-id></article-meta></front>'
           "<body><p>Text {n}.</p></body>{subs}</article>")
    doc = ("<pmc-articleset>" + art.format(n=1, subs="<sub-article><body><p>s</p></body></sub-article>" * 2)
           + art.format(n=2, subs="<sub-article><body><p>t</p></body></sub-article>") + "</pmc-articleset>").encode()
    got = [(r.article.pmcid, r.article.n_sub_articles, [p.text for p in r.paragraphs]) for r in parse_articles(doc, "w.xml", min_tokens=0)]
    assert got == [("PMC1", 2, ["Text 1."]), ("PMC2", 1, ["Text 2."])]
