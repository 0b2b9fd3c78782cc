"""Walk `<body>` and address each prose paragraph by its path.

`path` = local element name + `[i]`, i = 0-based position among same-name siblings (every sibling
of that name counts, including ones we skip, so ids do not move when the filter changes), from
`<body>` (not included), joined with "/": `sec[0]/sec[2]/p[1]`, `p[0]`, `sec[3]/list[0]/list-item[2]/p[0]`.
Paragraph id = f"{pmcid}/{path}". Other stages and a hand-labelled gold set key on it: do not change.

What counts as a paragraph: `<p>` directly in body, sec, boxed-text, disp-quote, statement and
list-item (lists nested inside a `<p>` stay part of that paragraph's text). Not walked: reference
sections (sec-type ref-list or a title like "References", or a sec holding a `<ref-list>`),
PMC's "Associated Data" section (sec-type associated-data, a copy of the data statement),
tables, figures, footnotes, definition lists (abbreviation glossaries), supplementary material,
display formulas between paragraphs and anything in `<back>`, `<floats-group>` or `<sub-article>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from pipeline.jats.text import collapse, flat_text, prepare_body

# Containers whose children are walked for paragraphs; anything else is skipped (but still counted).
CONTAINERS = frozenset({"sec", "boxed-text", "disp-quote", "list", "list-item", "statement"})
TITLED = frozenset({"sec", "boxed-text", "statement"})  # their <title>/<caption><title> joins the chain

_REF_TITLES = re.compile(
    r"^\s*(\d+[.)]?\s*)?(references?|reference list|bibliography|literature cited|works cited|"
    r"references and notes|literatur|références|referencias|bibliografía)\s*[:.]?\s*$",
    re.I,
)
_REF_SEC_TYPES = frozenset({"ref-list", "references", "bibliography"})
# PMC (2025+) appends an "Associated Data" section that repeats the data-availability statement
# already in the body: skipping it keeps that text from being counted twice.
_SKIP_SEC_TYPES = _REF_SEC_TYPES | {"associated-data"}


@dataclass(frozen=True, slots=True)
class RawParagraph:
    """A body paragraph before token counting and language ID."""

    path: str
    section_title: str | None
    text: str


def _title_of(el: etree._Element) -> str | None:
    """The element's <title> (or <caption><title>), read from the already rewritten body."""
    for ch in el:
        if not isinstance(ch.tag, str):
            continue
        name = ch.tag.rpartition("}")[2]
        if name == "title":
            t = flat_text(ch)
            return t or None
        if name == "caption":  # boxed-text keeps its title in a caption
            for cc in ch:
                if isinstance(cc.tag, str) and cc.tag.rpartition("}")[2] == "title":
                    return flat_text(cc) or None
    return None


def is_reference_section(sec: etree._Element, title: str | None = None) -> bool:
    """A "References" section placed inside <body> (2025-26 Wiley files do this), or PMC's
    duplicated "Associated Data" section: sections whose paragraphs are not body prose."""
    if (sec.get("sec-type") or "").lower() in _SKIP_SEC_TYPES:
        return True
    # lxml's tag filter runs in C: no Python object for each of the section's other children.
    for _ in sec.iterchildren("{*}ref-list"):
        return True
    if title is None:
        title = _title_of(sec)
    return bool(title and _REF_TITLES.match(title))


def walk_body(body: etree._Element, ns_seen: list[str] | None = None) -> list[RawParagraph]:
    """Every prose paragraph of <body>, in document order, with its path and section-title chain.

    ns_seen: if given, gets the name of every namespaced `p` or container the walk counted (a path
    through one is not what a tool counting exact no-namespace tags finds; biomed_enriched.py)."""
    out: list[RawParagraph] = []
    prepare_body(body)
    _walk(body, "", (), out, ns_seen)
    return out


def _skipped_by_attributes_or_title(sec: etree._Element, title: str | None) -> bool:
    """is_reference_section without its <ref-list> child test (the walk sees the children)."""
    if (sec.get("sec-type") or "").lower() in _SKIP_SEC_TYPES:
        return True
    return bool(title and _REF_TITLES.match(title))


# RawParagraph without the dataclass __init__ (type call + three object.__setattr__ calls of a frozen
# class): the same object, its slots set directly; the walk makes one per paragraph.
_new_raw = object.__new__
_set_path = RawParagraph.path.__set__
_set_section = RawParagraph.section_title.__set__
_set_text = RawParagraph.text.__set__


def _walk(
    container: etree._Element, prefix: str, titles: tuple[str, ...], out: list[RawParagraph], ns_seen: list[str] | None
) -> bool:
    """Append the container's paragraphs to `out`; True when it has a <ref-list> child (in any
    namespace), which makes a sec a reference section (is_reference_section): the caller then
    drops what this walk appended, as if the sec had been skipped before it."""
    # Only paragraphs and containers get a path, so only they are counted (by local name: a
    # namespaced <p> takes the next index of the plain ones).
    has_ref_list = False
    counts: dict[str, int] = {}
    n_p = 0
    section = " > ".join(titles) or None  # one join per container, not one per paragraph
    for child in container:
        tag = child.tag
        if type(tag) is not str:
            continue
        if tag[0] != "{":
            name = tag
        else:
            name = tag.rpartition("}")[2]
            if ns_seen is not None and (name == "p" or name in CONTAINERS):
                ns_seen.append(name)
        if name == "p":
            if len(child):
                text = flat_text(child)
            else:  # flat_text of a leaf, inline
                text = child.text
                text = collapse(text) if text else ""
            if text:
                raw = _new_raw(RawParagraph)
                _set_path(raw, f"{prefix}p[{n_p}]")
                _set_section(raw, section)
                _set_text(raw, text)
                out.append(raw)
            n_p += 1
        elif name in CONTAINERS:
            i = counts.get(name, 0)
            counts[name] = i + 1
            t = _title_of(child) if name in TITLED else None
            if name == "sec":
                if _skipped_by_attributes_or_title(child, t):
                    continue
                n_out, n_ns = len(out), len(ns_seen) if ns_seen is not None else 0
                if _walk(child, f"{prefix}sec[{i}]/", (*titles, t) if t else titles, out, ns_seen):
                    del out[n_out:]  # a sec holding a <ref-list>: a reference section after all
                    if ns_seen is not None:
                        del ns_seen[n_ns:]
                continue
            sub = (*titles, t) if t else titles
            _walk(child, f"{prefix}{name}[{i}]/", sub, out, ns_seen)
        elif name == "ref-list":
            has_ref_list = True
    return has_ref_list
