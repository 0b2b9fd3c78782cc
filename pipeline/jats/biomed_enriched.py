"""The published Biomed-Enriched addressing, reproduced: which of our paragraphs their tool can find.

The Biomed-Enriched dataset (HF almanach/Biomed-Enriched) names a paragraph by (PMID, path) and its
text is re-populated from the XML by the PyPI package `biomed-enriched` (0.1.0,
`biomed_enriched/_extractor.py`). Their rule, reproduced here exactly:

- base: `tree.find(".//body") or tree.getroot()`: the first no-namespace `<body>` in document order
  (a sub-article's or another wrapped article's when the main article has none), and the root when
  there is none or it has no children (an lxml element is false when it has no children). In a
  file in a default namespace `.//body` finds nothing, so the base is the root.
- path: "/"-separated steps, each `^\\w+\\[\\d+]$` (so `list-item`, `boxed-text`, `disp-quote` steps
  never parse and the whole path gives None);
- navigation: `current.findall(tag)[idx]` per step (exact tag, no namespace), None when out of range;
- text: `" ".join(" ".join(el.itertext()).split())` on the untouched element, None when itertext
  gives no character at all ("" when it gives only whitespace).

`be_render` parses with our hardened parser (pipeline/jats/xml.py) instead of their
`XMLParser(recover=True, huge_tree=True)`, keeping comments and processing instructions as theirs
does (itertext skips them but yields the text after them as a separate piece, which the " " join
turns into a space). On a well-formed file the trees are the same, so the output is theirs exactly,
with one difference by policy: their parser expands entities declared in an internal DTD subset,
ours never does (the DOCTYPE is cut out and such a file is rejected with RecordError, as the parse
stage rejects it). The PMC-OA sample has no internal subset and no entity reference other than
&amp; &lt; &gt; (checked when this module was written), so there it matches theirs everywhere
(tests/test_biomed_enriched.py checks every paragraph against the published code).

`be_addressable` on our paragraph rows (pipeline/jats/__init__.py) is computed during the parse with
these rules, without navigating unless namespaced elements are involved: see `path_grammar_ok`
and `path_navigates`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from lxml import etree

from pipeline.jats.xml import DEFAULT_MAX_BYTES, parse_xml_with_doctype

# Theirs: _PATH_TOKEN_RE = re.compile(r"^(?P<tag>\w+)\[(?P<index>\d+)]$"), matched on each step.
STEP = re.compile(r"^(?P<tag>\w+)\[(?P<index>\d+)]$")
# The same grammar on a whole path in one C-level match (a "$" before a final newline is the only
# thing it does not copy, and no XML name or index ends in one).
_PATH = re.compile(r"\w+\[\d+](?:/\w+\[\d+])*\Z")
path_grammar_ok = _PATH.match  # a match object (true) when every step fits their grammar, else None


def parse_steps(path: str) -> list[tuple[str, int]] | None:
    """`sec[0]/p[1]` -> [("sec", 0), ("p", 1)]; None when their parser refuses the path."""
    if not path:
        return None
    out = []
    for token in path.split("/"):
        m = STEP.match(token)
        if m is None:
            return None
        out.append((m.group("tag"), int(m.group("index"))))
    return out


def steps_ok(path: str) -> bool:
    """Does every step of the path match their grammar (no hyphenated element names)?"""
    return _PATH.match(path) is not None


def be_base(root: etree._Element) -> etree._Element:
    """Their base element: the first no-namespace <body> in document order if it has children, else
    the root (their `tree.find(".//body") or tree.getroot()`)."""
    body = root.getroottree().find(".//body")
    return body if body is not None and len(body) else root.getroottree().getroot()


def be_resolve(base: etree._Element, path: str) -> etree._Element | None:
    """Their navigation: `current.findall(tag)[idx]` for each step; None when a step fails."""
    steps = parse_steps(path)
    if steps is None:
        return None
    current = base
    for tag, idx in steps:
        children = current.findall(tag)
        if idx >= len(children):
            return None
        current = children[idx]
    return current


def be_text(el: etree._Element) -> str | None:
    """Their text of an untouched element: itertext pieces joined by " ", whitespace collapsed."""
    text = " ".join(el.itertext())
    return " ".join(text.split()) if text else None


def path_navigates(body: etree._Element, path: str, foreign: set | frozenset = frozenset()) -> bool:
    """Slow exact check for the rare body holding namespaced elements: does their navigation from
    `body` reach the element our path names (ours counts same-local-name siblings, theirs only
    exact no-namespace tags)? `foreign`: elements that were namespaced before strip_jats_namespace."""
    steps = parse_steps(path)
    if steps is None:
        return False
    current = body
    for tag, idx in steps:
        ours = [c for c in current if isinstance(c.tag, str) and c.tag.rpartition("}")[2] == tag]
        theirs = [c for c in current if c.tag == tag and c not in foreign]
        if idx >= len(ours) or idx >= len(theirs) or ours[idx] is not theirs[idx]:
            return False
        current = ours[idx]
    return True


def be_render(xml: bytes, paths: Iterable[str], *, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, str | None]:
    """path -> the text their tool gives for it on this file (None where it gives None).

    Parsed with our safe parser (no network, no DTD, no entity expansion); RecordError when the
    file does not parse."""
    root, _ = parse_xml_with_doctype(xml, max_bytes=max_bytes, keep_comments=True)
    base = be_base(root)
    out: dict[str, str | None] = {}
    for path in paths:
        el = be_resolve(base, path)
        out[path] = be_text(el) if el is not None else None
    return out
