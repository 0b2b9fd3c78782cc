"""The embedded demo corpus parses as documented in examples/README.md."""

from __future__ import annotations

from pathlib import Path

from pipeline.jats import parse_article

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "jats"

# pmcid -> (article_type, license, commercial, language, kept paragraphs, short dropped, sub-articles)
EXPECTED = {
    "PMC9100001": ("case-report", "CC BY", True, "en", 8, 0, 0),
    "PMC9100002": ("case-report", "CC BY-NC-ND", False, "en", 8, 0, 0),
    "PMC9100003": ("case-report", "none", False, "en", 7, 0, 0),
    "PMC9100004": ("research-article", "CC BY", True, "en", 9, 1, 0),
    "PMC9100005": ("research-article", "CC0", True, "en", 7, 1, 0),
    "PMC9100006": ("review-article", "CC BY", True, "en", 7, 4, 0),
    "PMC9100007": ("research-article", "CC BY-NC", False, "fr", 7, 0, 0),
    "PMC9100008": ("brief-report", "CC BY", True, "en", 5, 1, 1),
    "PMC9100009": ("research-article", "CC BY", True, "en", 6, 0, 0),
    "PMC9100010": ("editorial", "CC BY-NC-ND", False, "en", 0, 0, 0),  # declared xml:lang
}


def test_demo_corpus_parses_as_documented():
    got = {}
    for f in sorted(EXAMPLES.iterdir()):
        r = parse_article(f.read_bytes(), f.name)
        a = r.article
        got[a.pmcid] = (a.article_type, a.license, a.commercial, a.language, a.n_paragraphs,
                        a.n_short_paragraphs, a.n_sub_articles)
        assert all(p.language == a.language for p in r.paragraphs), f.name
    assert got == EXPECTED
    assert sum(v[4] for v in got.values()) == 64


def test_translation_sub_article_not_in_paragraphs():
    r = parse_article((EXAMPLES / "PMC9100008.xml").read_bytes(), "PMC9100008.xml", min_tokens=0)
    assert not any("trabajadores" in p.text for p in r.paragraphs)
