"""Pure JATS parsing for PMC-OA: bytes in, Article + Paragraph records out. No Beam import.

    parse_article(xml, source) -> ParsedArticle      one article per file (the usual case)
    parse_articles(xml, source) -> [ParsedArticle | Reject]   wrappers holding several articles

Both raise `RecordError(reason, detail)` for a file that cannot be read as an article at all.
The text policy is in `text.py`, the paragraph addressing in `body.py`, licenses in `license.py`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from lxml import etree

from pipeline.core.errors import RecordError, RejectReason
from pipeline.core.records import Article, Paragraph, Reject
from pipeline.jats.biomed_enriched import path_grammar_ok, path_navigates
from pipeline.jats.body import CONTAINERS, RawParagraph, walk_body
from pipeline.jats.lang import detect_languages, language_id_name
from pipeline.jats.license import License, extract_license
from pipeline.jats.meta import (
    article_ids,
    authors_of,
    child,
    declared_language,
    find_articles,
    journal_of,
    pmcid_of,
    strip_jats_namespace,
    title_of,
    year_of,
)
from pipeline.jats.tokens import count_tokens, tokenizer_name
from pipeline.jats.xml import DEFAULT_MAX_BYTES, Doctype, parse_for_extraction, parse_xml_with_doctype

__all__ = [
    "DEFAULT_MIN_TOKENS",
    "Extracted",
    "ParsedArticle",
    "extract_articles",
    "language_id_name",
    "parse_article",
    "parse_articles",
    "tokenizer_name",
]

# The paper kept paragraphs of at least 64 tokens (Biomed-Enriched, section 3).
DEFAULT_MIN_TOKENS = 64
STAGE = "parse"


@dataclass
class Extracted:
    """An article after XML extraction only (no tokens, no language): what the benchmark times."""

    article: Article
    paragraphs: list[RawParagraph]
    declared_language: str | None
    be_addressable: list[bool] = field(default_factory=list)  # one per paragraph (docs/parse.md)


@dataclass
class ParsedArticle:
    """An article record and its kept paragraphs, with counts of what was dropped."""

    article: Article
    paragraphs: list[Paragraph]
    n_short_paragraphs: int = 0  # under min_tokens, dropped
    n_body_paragraphs: int = 0  # non-empty paragraphs found in <body> before the length filter
    has_body: bool = True
    warnings: list[str] = field(default_factory=list)


_FIND = object()


def _extract_one(art: etree._Element, source: str, doctype: Doctype | None, be_body=_FIND) -> Extracted:
    """be_body: the file's first no-namespace <body> in document order (biomed_enriched.be_base),
    found before any namespace is stripped; looked up here when not given."""
    if be_body is _FIND:
        be_body = next(art.getroottree().getroot().iterdescendants("body"), None)
    foreign = None
    if art.tag[0] == "{" and be_body is not None and be_body.getparent() is art:
        # The article is in a namespace but this body is not: remember which elements were
        # namespaced before they lose it (a path through one is not theirs). Never in PMC-OA.
        foreign = {el for el in be_body.iter() if isinstance(el.tag, str) and el.tag[0] == "{"}
    strip_jats_namespace(art)
    front = child(art, "front")
    meta = child(front, "article-meta") if front is not None else None
    ids = article_ids(meta)
    pmcid = pmcid_of(ids, source)
    lic: License = extract_license(meta)
    body = child(art, "body")
    ns_seen: list[str] = []
    paragraphs = walk_body(body, ns_seen) if body is not None else []
    be_addressable = _be_addressable(body, be_body, paragraphs, foreign, ns_seen)
    # Sub-articles (and responses) are children of <article>; no need to walk the whole tree.
    n_sub = sum(1 for _ in art.iterchildren("sub-article", "response"))
    article = Article(
        pmcid=pmcid,
        pmid=ids.get("pmid"),
        doi=ids.get("doi"),
        title=title_of(meta),
        journal=journal_of(front),
        year=year_of(meta),
        article_type=art.get("article-type"),
        license=lic.name,
        license_url=lic.url,
        commercial=lic.commercial,
        language=None,
        n_paragraphs=0,
        source=source,
        authors=[],
        article_url=f"https://pmc.ncbi.nlm.nih.gov/articles/{pmcid}/",
        n_short_paragraphs=0,
        n_sub_articles=n_sub,
        dtd_version=art.get("dtd-version")
        or (doctype.public_id if doctype and doctype.name == "article" else None),
    )
    article.authors = authors_of(meta)
    if body is None:
        article.n_paragraphs = 0
    return Extracted(article, paragraphs, declared_language(art), be_addressable)


def _be_addressable(body, be_body, paragraphs: list[RawParagraph], foreign: set | None, ns_seen: list[str]) -> list[bool]:
    """For each paragraph: does the published Biomed-Enriched tool, given this file, find exactly
    this element at this path? Their base must be this <body> (the file's first no-namespace body,
    with children), every step must fit their `tag[index]` grammar (no hyphen), and their
    exact-tag navigation must count the siblings as ours does: it does unless namespaced elements
    are among them (then each path is navigated, see biomed_enriched.path_navigates)."""
    if body is None or body is not be_body or not len(body):
        return [False] * len(paragraphs)
    if foreign or ns_seen:
        return [path_navigates(body, p.path, foreign or frozenset()) for p in paragraphs]
    # path_grammar_ok(p.path) without a regex match per paragraph: every step of our paths is "p"
    # or a CONTAINERS name with its index (body.py), and of those names exactly the hyphenated
    # ones fail their `\w+` (checked at import, below), so a "-" anywhere in the path decides.
    return ["-" not in p.path for p in paragraphs]


assert all((path_grammar_ok(f"{n}[0]/p[0]") is not None) == ("-" not in n) for n in CONTAINERS | {"p"})


def extract_articles(
    xml: bytes, source: str, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> list[Extracted | Reject]:
    """XML -> articles with raw paragraphs (no token counts or language). RecordError for the file."""
    root, doctype, n_cut_sub = parse_for_extraction(xml, max_bytes=max_bytes)
    arts = find_articles(root)
    if len(arts) > 1 and n_cut_sub:
        # A wrapper with several articles: the cut sub-articles cannot be attributed, so take the full tree.
        root, doctype = parse_xml_with_doctype(xml, max_bytes=max_bytes, skip_back=True)
        arts, n_cut_sub = find_articles(root), 0
    if not arts:
        raise RecordError(RejectReason.NOT_AN_ARTICLE, f"root element <{etree.QName(root).localname}> holds no <article>")
    # Biomed-Enriched's base, before any article's namespace is stripped. Nothing before the first
    # </body> is cut from the tree, so this is the same element their full parse finds.
    be_body = next(root.iterdescendants("body"), None)  # their find(".//body"), without ElementPath
    out: list[Extracted | Reject] = []
    for i, art in enumerate(arts):
        src = source if len(arts) == 1 else f"{source}#article[{i}]"
        try:
            ex = _extract_one(art, src, doctype, be_body)
            ex.article.n_sub_articles += n_cut_sub  # sub-articles left out of the tree (one article)
            out.append(ex)
        except RecordError as e:
            out.append(Reject(src, STAGE, e.reason.value, e.detail))
    return out


def _finish(ex: Extracted, min_tokens: int) -> ParsedArticle:
    raw = ex.paragraphs
    art = ex.article
    counts = count_tokens([p.text for p in raw])
    be = ex.be_addressable or [None] * len(raw)
    kept = [(p, n, a) for p, n, a in zip(raw, counts, be, strict=True) if n >= min_tokens]
    langs = detect_languages([p.text for p, _, _ in kept])
    pmcid = art.pmcid
    paragraphs = [
        Paragraph(
            id=f"{pmcid}/{p.path}",
            article_id=pmcid,
            path=p.path,
            section_title=p.section_title,
            text=p.text,
            n_tokens=n,
            language=lang,
            language_score=score,
            pmid=art.pmid,
            be_addressable=a,
        )
        for (p, n, a), (lang, score) in zip(kept, langs, strict=True)
    ]
    art.n_paragraphs = len(paragraphs)
    art.n_short_paragraphs = len(raw) - len(kept)
    if ex.declared_language:
        art.language = ex.declared_language
    elif paragraphs:
        art.language = Counter(p.language for p in paragraphs if p.language).most_common(1)[0][0]
    return ParsedArticle(
        article=art,
        paragraphs=paragraphs,
        n_short_paragraphs=art.n_short_paragraphs,
        n_body_paragraphs=len(raw),
        has_body=bool(raw) or art.n_paragraphs > 0,
    )


def parse_articles(
    xml: bytes, source: str, *, min_tokens: int = DEFAULT_MIN_TOKENS, max_bytes: int = DEFAULT_MAX_BYTES
) -> list[ParsedArticle | Reject]:
    """Every article in a file (wrappers may hold several): records, or a Reject per bad article."""
    return [x if isinstance(x, Reject) else _finish(x, min_tokens) for x in extract_articles(xml, source, max_bytes=max_bytes)]


def parse_article(
    xml: bytes, source: str, *, min_tokens: int = DEFAULT_MIN_TOKENS, max_bytes: int = DEFAULT_MAX_BYTES
) -> ParsedArticle:
    """Parse one JATS article (bare `<article>` or wrapped) into its record and kept paragraphs.

    Raises RecordError(reason, detail) when the bytes are not one readable article: empty, too
    large, bad encoding, malformed or truncated XML, no `<article>`, no PMCID, or several articles
    in one wrapper (use `parse_articles` for those).
    """
    results = parse_articles(xml, source, min_tokens=min_tokens, max_bytes=max_bytes)
    if len(results) != 1:
        raise RecordError(RejectReason.NOT_AN_ARTICLE, f"{len(results)} articles in one file; use parse_articles")
    (r,) = results
    if isinstance(r, Reject):
        raise RecordError(RejectReason(r.reason), r.detail)
    return r
