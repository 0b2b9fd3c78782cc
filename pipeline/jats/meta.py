"""Article identifiers and metadata from `<front>`; finding the article(s) inside wrappers."""

from __future__ import annotations

import os
import re

from lxml import etree

from pipeline.core.errors import RecordError, RejectReason
from pipeline.jats.text import MATHML_NS, inline_text, local_name

XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_PMCID = re.compile(r"^\s*(?:PMC)?\s*(\d+)\s*$", re.I)
_PMCID_IN_NAME = re.compile(r"PMC(\d+)", re.I)
_KEEP_NS = (MATHML_NS, "http://www.w3.org/1999/xlink", "http://www.niso.org/schemas/ali/1.0/")


def find_articles(root: etree._Element) -> list[etree._Element]:
    """The `<article>` elements of a document: the root itself, or those inside a wrapper
    (`<pmc-articleset>`, an OAI-PMH `GetRecord` envelope, ...). Sub-articles are not articles."""
    if local_name(root.tag) == "article":
        return [root]
    found: list[etree._Element] = []
    stack = [root]
    while stack:  # breadth-limited search that does not descend into an article once found
        el = stack.pop()
        for ch in el:
            if not isinstance(ch.tag, str):
                continue
            if local_name(ch.tag) == "article":
                found.append(ch)
            else:
                stack.append(ch)
    found.sort(key=lambda e: e.sourceline or 0)
    return found


def strip_jats_namespace(article: etree._Element) -> None:
    """Some archives (NLM 2.x "archivearticle", OAI-PMH) put JATS in a default namespace: drop it
    so the rest of the parser can use plain names. MathML, XLink and ALI keep theirs."""
    tag = article.tag
    if tag[0] != "{":
        return
    ns = tag[1:].partition("}")[0]
    if ns in _KEEP_NS:
        return
    prefix = "{" + ns + "}"
    n = len(prefix)
    for el in article.iter(prefix + "*"):
        el.tag = el.tag[n:]


def child(el: etree._Element, tag: str) -> etree._Element | None:
    """`el.find(tag)` for a plain child name: the first child with exactly that tag. ElementPath's
    find/findall/findtext parse their path in Python on every call; lxml's tag filter runs in C."""
    for ch in el.iterchildren(tag):
        return ch
    return None


def grandchild(el: etree._Element, tag: str, sub: str) -> etree._Element | None:
    """`el.find("tag/sub")`: the first `sub` child of any `tag` child, in document order."""
    for ch in el.iterchildren(tag):
        for g in ch.iterchildren(sub):
            return g
    return None


def normalize_pmcid(raw: str | None) -> str | None:
    """"PMC123", "pmc123", "123" -> "PMC123"; anything else -> None."""
    if not raw:
        return None
    m = _PMCID.match(raw)
    return f"PMC{int(m.group(1))}" if m else None


def article_ids(article_meta: etree._Element | None) -> dict[str, str]:
    """pub-id-type -> value for the article's own <article-id> elements."""
    ids: dict[str, str] = {}
    if article_meta is None:
        return ids
    for el in article_meta.iterchildren("article-id"):
        if el.text:
            ids.setdefault((el.get("pub-id-type") or "").lower(), el.text.strip())
    return ids


def pmcid_of(ids: dict[str, str], source: str) -> str:
    """The article's PMCID from article-id pmc/pmcid, else from the file name; RecordError if none."""
    for key in ("pmc", "pmcid"):
        p = normalize_pmcid(ids.get(key))
        if p:
            return p
    m = _PMCID_IN_NAME.search(os.path.basename(source.split("!")[-1]))
    if m:
        return f"PMC{int(m.group(1))}"
    raise RecordError(RejectReason.NO_PMCID, "no <article-id pub-id-type='pmc'> and no PMC<digits> in the file name")


def journal_of(front: etree._Element | None) -> str | None:
    if front is None:
        return None
    jm = child(front, "journal-meta")
    if jm is None:
        return None
    t = grandchild(jm, "journal-title-group", "journal-title")
    if t is None:
        t = child(jm, "journal-title")
    if t is not None:
        return inline_text(t) or None
    for jid in jm.iterchildren("journal-id"):
        if jid.get("journal-id-type") == "nlm-ta" and jid.text:
            return jid.text.strip()
    return None


_PUB_PRIORITY = ("epub", "ppub", "pub", "collection", "epub-ppub", "ecorrected", "")


def year_of(article_meta: etree._Element | None) -> int | None:
    if article_meta is None:
        return None
    best: tuple[int, int] | None = None
    for d in article_meta.iterchildren("pub-date"):
        kind = (d.get("pub-type") or d.get("date-type") or "").lower()
        y = child(d, "year")
        y = None if y is None else (y.text or "")  # findtext("year")
        if not y or not y.strip()[:4].isdigit():
            continue
        rank = _PUB_PRIORITY.index(kind) if kind in _PUB_PRIORITY else len(_PUB_PRIORITY)
        cand = (rank, int(y.strip()[:4]))
        if best is None or cand < best:
            best = cand
    return best[1] if best else None


def authors_of(article_meta: etree._Element | None) -> list[str]:
    if article_meta is None:
        return []
    out: list[str] = []
    # iterchildren(tag) is what find/findall do for a plain child name, without ElementPath's
    # Python-level path handling per call (consortium papers list hundreds of contributors).
    for cg in article_meta.iterchildren("contrib-group"):
        for c in cg.iterchildren("contrib"):
            if (c.get("contrib-type") or "author") != "author":
                continue
            name = next(c.iterchildren("name"), None)
            if name is not None:
                g = next(name.iterchildren("given-names"), None)
                s = next(name.iterchildren("surname"), None)
                given = ((g.text if g is not None else None) or "").strip()
                sur = ((s.text if s is not None else None) or "").strip()
                full = " ".join(p for p in (given, sur) if p)
                if full:
                    out.append(full)
                continue
            collab = next(c.iterchildren("collab"), None)
            if collab is not None:
                t = inline_text(collab)
                if t:
                    out.append(t)
    return out


def declared_language(article: etree._Element) -> str | None:
    lang = article.get(XML_LANG)
    if not lang:
        return None
    return lang.strip().lower().split("-")[0][:3] or None


def title_of(article_meta: etree._Element | None) -> str | None:
    if article_meta is None:
        return None
    t = grandchild(article_meta, "title-group", "article-title")
    return (inline_text(t) or None) if t is not None else None
