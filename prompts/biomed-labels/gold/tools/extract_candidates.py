"""List candidate gold-set paragraphs from the real PMC-OA sample, for reading and labelling by hand.

Paragraph ids follow the parse stage: ``{pmcid}/{path}`` where path is element local-name +
``[index]`` (0-based among same-name sibling elements), starting below the main article's
``<body>``. Only ``<p>`` reached through ``<sec>`` elements (or directly in ``<body>``) are
listed: no boxed-text, lists, tables, figures, footnotes, sub-articles or reference sections.

Usage::

    python prompts/biomed-labels/gold/tools/extract_candidates.py ../shared/data/pmc-oa-sample \
        [--min-words 60] [--article PMC123] [--format tsv|text]

Not part of the package: a helper for the people who label the gold set.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

REFERENCE_TITLES = re.compile(r"^\s*(\d+\.?\s*)?(references?|bibliography|literature cited|works cited)\s*$", re.I)
# Elements whose content is not running prose of the paragraph: floats and notes nested in a <p>
# (the parse stage drops them with their captions, so the labeller must not read them either),
# MathML/TeX duplicates and float labels.
SKIP_TEXT = {
    "tex-math", "label", "object-id", "table-wrap", "table-wrap-group", "table", "fig", "fig-group",
    "graphic", "inline-graphic", "media", "inline-media", "supplementary-material", "fn", "fn-group",
    "table-wrap-foot", "caption", "alt-text", "long-desc", "array", "chem-struct-wrap",
}
# Block elements inside a <p>: their text must be separated from neighbours by a space.
BLOCKISH = {"list", "list-item", "disp-formula", "table-wrap", "fig", "boxed-text", "disp-quote", "p", "def-list",
            "break", "inline-formula", "xref", "sup", "sub"}
WS = re.compile(r"\s+")


@dataclass(frozen=True)
class Candidate:
    """One body paragraph: its id, section title, word count and normalised text."""

    id: str
    pmcid: str
    path: str
    section_title: str
    n_words: int
    text: str


def local(el: etree._Element) -> str:
    """Local name of an element (namespaces dropped)."""
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def _text_parts(el: etree._Element, out: list[str]) -> None:
    name = local(el)
    if name in SKIP_TEXT:
        if el.tail:
            out.append(el.tail)
        return
    if name == "alternatives":
        # Keep only the first alternative (MathML and TeX encode the same formula).
        kids = [k for k in el if isinstance(k.tag, str)]
        if kids:
            _text_parts_inner(kids[0], out)
        if el.tail:
            out.append(el.tail)
        return
    pad = name in BLOCKISH
    if pad:
        out.append(" ")
    if el.text:
        out.append(el.text)
    for child in el:
        if isinstance(child.tag, str):
            _text_parts(child, out)
        elif child.tail:  # comments / processing instructions
            out.append(child.tail)
    if pad:
        out.append(" ")
    if el.tail:
        out.append(el.tail)


def _text_parts_inner(el: etree._Element, out: list[str]) -> None:
    tail, el.tail = el.tail, None
    try:
        _text_parts(el, out)
    finally:
        el.tail = tail


def paragraph_text(p: etree._Element) -> str:
    """Whitespace-normalised text of a paragraph, inline tags never gluing words."""
    out: list[str] = []
    _text_parts_inner(p, out)
    text = WS.sub(" ", "".join(out)).strip()
    return re.sub(r"\s+([,.;:)\]])", r"\1", text)


def main_article(root: etree._Element) -> etree._Element:
    """The main <article> (the root, or the first one inside a <pmc-articleset> wrapper)."""
    if local(root) == "article":
        return root
    for el in root.iter():
        if local(el) == "article":
            return el
    raise ValueError("no <article> element")


def pmcid_of(article: etree._Element, fallback: str) -> str:
    """PMCID with the 'PMC' prefix, from article-meta, else from the file name."""
    for el in article.iter():
        if local(el) == "article-id" and el.get("pub-id-type") in ("pmc", "pmcid"):
            value = (el.text or "").strip()
            if value:
                return value if value.upper().startswith("PMC") else f"PMC{value}"
        if local(el) == "body":
            break
    return fallback


def _section_title(sec: etree._Element | None) -> str:
    if sec is None:
        return ""
    for child in sec:
        if local(child) == "title":
            return paragraph_text(child)
    return ""


def _walk(el: etree._Element, prefix: str, title: str, in_refs: bool) -> Iterator[tuple[str, str, etree._Element]]:
    counts: dict[str, int] = {}
    for child in el:
        name = local(child)
        if not name:
            continue
        idx = counts.get(name, 0)
        counts[name] = idx + 1
        path = f"{prefix}/{name}[{idx}]" if prefix else f"{name}[{idx}]"
        if name == "p" and not in_refs:
            yield path, title, child
        elif name == "sec":
            sec_title = _section_title(child)
            refs = in_refs or bool(REFERENCE_TITLES.match(sec_title))
            yield from _walk(child, path, sec_title or title, refs)


def candidates(xml_path: Path, min_words: int = 60) -> Iterator[Candidate]:
    """Yield body paragraphs of at least ``min_words`` words from one JATS file."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    root = etree.parse(str(xml_path), parser).getroot()
    article = main_article(root)
    pmcid = pmcid_of(article, xml_path.name.split(".")[0])
    body = next((c for c in article if local(c) == "body"), None)
    if body is None:
        return
    for path, title, p in _walk(body, "", "", False):
        text = paragraph_text(p)
        n = len(text.split())
        if n >= min_words:
            yield Candidate(f"{pmcid}/{path}", pmcid, path, title, n, text)


def main(argv: list[str] | None = None) -> int:
    """Print candidates as TSV (id, section, words, text) or as readable text blocks."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--min-words", type=int, default=60)
    ap.add_argument("--article", action="append", default=[])
    ap.add_argument("--format", choices=("tsv", "text"), default="text")
    args = ap.parse_args(argv)
    files = sorted(f for f in args.folder.iterdir() if f.suffix in (".xml", ".nxml"))
    for f in files:
        if args.article and f.name.split(".")[0] not in args.article:
            continue
        for c in candidates(f, args.min_words):
            if args.format == "tsv":
                print(f"{c.id}\t{c.section_title}\t{c.n_words}\t{c.text}")
            else:
                print(f"== {c.id} | {c.section_title} | {c.n_words}w\n{c.text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
