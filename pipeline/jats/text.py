"""Inline-text policy: how the content of one JATS block element becomes the text a person reads.

- Inline markup (italic, bold, sup, sub, sc, xref, ext-link, named-content ...) contributes its text
  exactly where it stands, with no space added: `The <italic>E. coli</italic> strain` reads
  "The E. coli strain" and `CD4<sup>+</sup>` reads "CD4+". Spaces come only from the source.
- Block content nested in a paragraph (lists, quotes, display formulas, line breaks) is set off by
  a soft separator that becomes one space, except before closing punctuation / after an opening one.
- Citations keep the text the publisher printed ("[12]", "(Smith et al., 2010)"); a superscript
  citation (`<sup><xref ref-type="bibr">12</xref></sup>`) becomes " [12]" so numbers do not glue onto
  words. Two adjacent citations with nothing but whitespace between them are set apart by a comma,
  so their numbers do not glue either: `[<xref>1</xref><xref>3</xref>]` reads "[1,3]" (not "[13]"),
  `<sup><xref>1</xref><xref>3</xref></sup>` " [1,3]". Footnote marks (`xref` to fn / table-fn) are dropped. A numeric superscript right after a
  digit is an exponent: `10<sup>6</sup>` reads "10^6" (not "106").
- Formulas: TeX from `<tex-math>` when present (document wrapper removed, as `$...$`), else the
  MathML `@alttext`, else the MathML's text content; formula labels are dropped.
- Floats and notes are not prose: tables, figures, graphics, media, supplementary material and
  footnotes inside a paragraph are removed (their captions too).
- Unexpanded entity references never reach the text; whitespace (incl. NBSP, thin space) is
  collapsed to single spaces.
"""

from __future__ import annotations

import re

from lxml import etree

MATHML_NS = "http://www.w3.org/1998/Math/MathML"

# Soft separator: U+2028 LINE SEPARATOR is valid in XML text (lxml refuses control characters)
# and str.split() treats it as whitespace, so normalisation turns it into a space.
SEP = "\u2028"

SKIP = frozenset(
    {
        "table-wrap", "table-wrap-group", "table", "fig", "fig-group", "graphic", "inline-graphic",
        "media", "inline-media", "supplementary-material", "fn", "fn-group", "table-wrap-foot",
        "ref-list", "object-id", "alt-text", "long-desc", "caption", "private-char", "sec-meta",
        "processing-meta", "glyph-data", "array", "chem-struct-wrap",
    }
)
BLOCK = frozenset(
    {
        "p", "list", "list-item", "disp-quote", "boxed-text", "def-list", "def-item", "term", "def",
        "title", "statement", "sec", "verse-group", "verse-line", "speech", "preformat", "code",
        "attrib", "label", "question", "answer", "explanation", "td", "th", "tr",
    }
)
FORMULA = frozenset({"inline-formula", "disp-formula", "chem-struct", "disp-formula-group"})


def local_name(tag: str) -> str:
    """`{ns}name` -> `name`."""
    return tag.rpartition("}")[2] if tag[0] == "{" else tag


_TEX_DOC = re.compile(r"\\begin\{document\}(.*?)\\end\{document\}", re.S)
_TEX_STRIP = re.compile(r"^\s*(?:\$\$|\$|\\\[|\\\()\s*|\s*(?:\$\$|\$|\\\]|\\\))\s*$")


def tex_text(tex: str) -> str:
    """The formula inside a tex-math element, without the LaTeX document wrapper, as `$...$`."""
    m = _TEX_DOC.search(tex)
    body = m.group(1) if m else tex
    body = _TEX_STRIP.sub("", body.strip())
    body = collapse(body)
    return f"${body}$" if body else ""


def mathml_text(math: etree._Element) -> str:
    """A MathML formula as linear text: its alttext when given, else its characters in order."""
    alt = math.get("alttext")
    if alt and alt.strip():
        return collapse(alt)
    # Serialising as text is one C call (the same characters as itertext(), without the Python loop).
    return etree.tostring(math, method="text", encoding=str, with_tail=False).strip()


def formula_text(el: etree._Element) -> str:
    """Text of inline-formula / disp-formula: TeX, else MathML alttext, else MathML text."""
    candidates = [el]
    for ch in el:
        if isinstance(ch.tag, str) and local_name(ch.tag) == "alternatives":
            candidates.insert(0, ch)
    mathml = None
    for c in candidates:
        for ch in c:
            tag = ch.tag
            if not isinstance(tag, str):
                continue
            name = local_name(tag)
            if name == "tex-math" and ch.text:
                return tex_text(ch.text)
            if name == "math" and mathml is None:
                mathml = ch
    if mathml is not None:
        return mathml_text(mathml)
    # Neither TeX nor MathML (plain-text formula or a graphic): its own text, minus the label.
    for lab in [c for c in el if isinstance(c.tag, str) and local_name(c.tag) == "label"]:
        _remove_keep_tail(lab)
    return "".join(el.itertext())


def _remove_keep_tail(el: etree._Element) -> bool:
    """Remove an element but keep the text that follows it. True (its descendants left the tree)."""
    parent = el.getparent()
    if parent is None:
        return False
    tail = el.tail
    if tail:
        prev = el.getprevious()
        if prev is not None:
            prev.tail = (prev.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(el)
    return True


def _replace_with_text(el: etree._Element, text: str) -> bool:
    """Keep the element (and its tail) but make `text` its whole content. True (its descendants
    left the tree)."""
    tail = el.tail
    el.clear()
    el.text = text
    el.tail = tail
    return True


def _has_text(el: etree._Element) -> bool:
    return any(t.strip() for t in el.itertext())


def _plain_citation(el) -> bool:
    """An `<xref ref-type="bibr">` with text of its own (not the `<xref><sup>3</sup></xref>` form)."""
    tag = el.tag
    if not isinstance(tag, str) or local_name(tag) != "xref" or el.get("ref-type") != "bibr":
        return False
    if len(el) == 1 and isinstance(el[0].tag, str) and local_name(el[0].tag) == "sup" and not (el.text or "").strip():
        return False
    return _has_text(el)


def _citation_group_text(el: etree._Element) -> str:
    """The text of a `<sup>` of citations, with a comma between two that nothing else separates."""
    parts = [el.text or ""]
    kids = list(el)
    for k, ch in enumerate(kids):
        t = "".join(ch.itertext())
        tail = ch.tail or ""
        if not tail.strip() and t.strip() and k + 1 < len(kids) and _has_text(kids[k + 1]):
            tail = "," + tail
        parts.append(t)
        parts.append(tail)
    return "".join(parts)


def _only_citations(el: etree._Element) -> bool:
    """True for `<sup>` holding only citation xrefs and separators ("1", "1,2", "[3-5]")."""
    has = False
    for ch in el:
        tag = ch.tag
        if not isinstance(tag, str):
            return False
        if local_name(tag) != "xref" or ch.get("ref-type") not in ("bibr", None):
            return False
        has = True
        if ch.tail and ch.tail.strip(" ,;–-−—[]()\u2009\u00a0"):
            return False
    return has and not (el.text or "").strip(" [(")


# A leading "+" is a charge ("y3<sup>+1</sup>"), not an exponent.
_EXPONENT = re.compile(r"[-−–]?\d")


def _text_before(el: etree._Element) -> str | None:
    prev = el.getprevious()
    if prev is not None:
        return prev.tail
    parent = el.getparent()
    return parent.text if parent is not None else None


# The rewrites return True when the element's descendants left the tree (content replaced by
# text, or the element removed), so that `_rewrite` does not rewrite those descendants as well.


def _prep_sup(el: etree._Element) -> bool | None:
    if len(el) and _only_citations(el):
        text = _citation_group_text(el).strip(" []()")
        return _replace_with_text(el, f"{SEP}[{text}]" if text else "")
    t = el.text
    # A numeric superscript right after a digit is an exponent: "10<sup>6</sup>" -> "10^6", not "106".
    if t and _EXPONENT.match(t):
        before = _text_before(el)
        if before and before[-1].isdigit():
            el.text = "^" + t


def _prep_xref(el: etree._Element) -> bool | None:
    rt = el.get("ref-type")
    if rt in ("fn", "table-fn"):
        return _remove_keep_tail(el)
    elif rt == "bibr" and len(el) == 1 and isinstance(el[0].tag, str) and local_name(el[0].tag) == "sup" \
            and not (el.text or "").strip():
        inner = "".join(el[0].itertext()).strip(" []")
        return _replace_with_text(el, f"{SEP}[{inner}]" if inner else "")
    elif rt == "bibr" and not (el.tail or "").strip():
        # "[<xref>1</xref><xref>3</xref>]": a comma, or the numbers would read "[13]".
        nxt = el.getnext()
        if nxt is not None and _plain_citation(nxt) and _plain_citation(el):
            el.tail = "," + (el.tail or "")


def _prep_formula(el: etree._Element) -> bool:
    text = formula_text(el)
    if local_name(el.tag) != "inline-formula":
        text = f"{SEP}{text}{SEP}"
    return _replace_with_text(el, text)


_STRUCTURAL = frozenset({"p", "sec", "title", "label", "caption"})


def _prep_block(el: etree._Element) -> None:
    el.text = SEP + (el.text or "")
    el.tail = SEP + (el.tail or "")
    # Paragraphs, titles and labels are set apart by their container (a body has thousands of
    # them and reads them one by one; inside a paragraph they only occur within these containers).
    for ch in el:
        tag = ch.tag
        if type(tag) is str and (tag if tag[0] != "{" else tag.rpartition("}")[2]) in _STRUCTURAL:
            ch.text = SEP + (ch.text or "")
            ch.tail = SEP + (ch.tail or "")


def _prep_break(el: etree._Element) -> None:
    el.tail = SEP + (el.tail or "")


_PREP = {
    **{n: _prep_block for n in BLOCK - _STRUCTURAL},
    **{n: _prep_formula for n in FORMULA},
    "math": lambda el: _replace_with_text(el, mathml_text(el)),
    "tex-math": lambda el: _replace_with_text(el, tex_text(el.text or "")),
    "alternatives": lambda el: _replace_with_text(el, formula_text(el)),
    "xref": _prep_xref,
    "sup": _prep_sup,
    "break": _prep_break,
}
# "{*}name" matches the name in any namespace or none (MathML's math, a stray JATS namespace).
_SKIP_TAGS = tuple(f"{{*}}{n}" for n in SKIP)
_PREP_TAGS = tuple(f"{{*}}{n}" for n in _PREP)


# Inside <body> the walk reads a sec's <ref-list> (to skip the section) and a boxed-text's
# <caption><title>, so the whole-body rewrite keeps those two; a paragraph's own rewrite drops them.
_BODY_SKIP_TAGS = tuple(f"{{*}}{n}" for n in SKIP - {"ref-list", "caption"})


def _prepare(el: etree._Element, skip_tags: tuple[str, ...] = _SKIP_TAGS) -> None:
    """Rewrite an element in place so that its text content is the text per the policy above.

    Skipped subtrees go in one C-level call; only the few special elements are touched in Python.
    The rewrite is idempotent (titles may be read twice)."""
    etree.strip_elements(el, *skip_tags, with_tail=False)
    # A list first: the rewrite detaches descendants (a formula's MathML), and lxml's iterator
    # would follow them out of the tree.
    _rewrite(el, list(el.iter(*_PREP_TAGS)))


def _rewrite(el: etree._Element, todo: list[etree._Element]) -> None:
    """Apply the rewrites to `todo` (el's special elements, in document order), skipping those
    that an earlier rewrite took out of the tree: the MathML and TeX of a formula already turned
    into text, the xrefs of a citation superscript already read. Rewriting those changed nothing
    that is read (they are no longer in `el`), and they are 1 in 6 of a body's special elements.

    After a rewrite that detached x's descendants, they follow x in `todo` (document order): each
    has lost its parent (a former child of x) or has one among the skipped; the first element
    that has neither is still in the tree and ends the run."""
    gone = None
    for x in todo:
        if gone is not None:
            parent = x.getparent()
            if parent is None or parent in gone:
                gone.add(x)
                continue
            gone = None
        if x is el:
            continue
        tag = x.tag
        if tag == "xref":
            # Over half of the special elements; most need nothing: the xrefs to figures, tables,
            # sections..., and citations with no <sup> child and a tail of their own. Those are
            # passed over here, before the call: the tests _prep_xref would make, in its order.
            rt = x.get("ref-type")
            if rt == "bibr":
                if len(x) != 1 and (x.tail or "").strip():
                    continue
            elif rt != "fn" and rt != "table-fn":
                continue
            if _prep_xref(x):
                gone = {x}
        elif _PREP[tag if tag[0] != "{" else tag.rpartition("}")[2]](x):
            gone = {x}


def prepare_body(body: etree._Element) -> None:
    """Rewrite a whole <body> once (one pass instead of one per paragraph); then read each
    paragraph with `flat_text`."""
    _prepare(body, _BODY_SKIP_TAGS)


def flat_text(el: etree._Element) -> str:
    """Normalised text content of an element already rewritten by `_prepare`/`prepare_body`."""
    if len(el) == 0:
        t = el.text
        return collapse(t) if t else ""
    # Serialising as text is one C call, ~6x faster than "".join(el.itertext()).
    return normalize(etree.tostring(el, method="text", encoding=str, with_tail=False))


_SPECIAL = frozenset(SKIP) | frozenset(_PREP)


def _prepare_small(el: etree._Element) -> None:
    """`_prepare` for a small element (a title, a license): a Python scan of its few descendants
    is cheaper than building lxml's multi-tag matchers."""
    todo = []
    skip = False
    for d in el.iterdescendants():
        tag = d.tag
        if type(tag) is str:
            name = tag if tag[0] != "{" else tag.rpartition("}")[2]
            if name in _SPECIAL:
                todo.append(name)
                skip = skip or name in SKIP
    if skip:
        _prepare(el)
    elif todo:
        _rewrite(el, list(el.iterdescendants(*_PREP_TAGS)))


_CLOSE = frozenset(",.;:!?)]}%")
_OPEN = frozenset("([{")


# The whitespace characters other than " " that real text holds, most frequent first (newlines of
# the source's line wrapping, NBSP, thin and hair spaces), and the soft separator.
_USUAL_WS = ("\n", "\xa0", "\u2009", "\t", "\r", "\u200a", SEP)


def collapse(text: str) -> str:
    """Exactly `" ".join(text.split())`, without splitting text that is already collapsed or whose
    only other whitespace is in _USUAL_WS (nearly all paragraphs).

    Every whitespace character but " " is non-printable (categories Cc, Zs, Zl, Zp: checked for
    all of Unicode), so text with no double space for which `str.isprintable()` holds has no
    whitespace left to collapse; both checks run in C."""
    text = text.strip()
    if "  " not in text and text.isprintable():
        return text
    t = text
    for ch in _USUAL_WS:
        if ch in t:
            t = t.replace(ch, " ")
    while "  " in t:
        t = t.replace("  ", " ")
    if t.isprintable():
        return t  # the ends were stripped before any whitespace became " "
    return " ".join(text.split())  # other whitespace (or a non-printable character) remains


def normalize(raw: str) -> str:
    """Soft separators resolved, whitespace collapsed to single spaces, ends stripped.

    A soft separator becomes one space, except before closing punctuation or after an opening one."""
    raw = raw.strip()  # also the separators around the paragraph itself
    if SEP in raw:
        out = ""
        for part in raw.split(SEP):
            part = part.strip()
            if not part:
                continue
            if out and part[0] not in _CLOSE and out[-1] not in _OPEN:
                out += " "
            out += part
        raw = out
    return collapse(raw)


def inline_text(el: etree._Element) -> str:
    """The readable text of a block element (a paragraph, a title), per the policy above.

    Rewrites `el`'s subtree in place (the parser's tree is ours and read once)."""
    if len(el) == 0:
        t = el.text
        return collapse(t) if t else ""
    _prepare_small(el)
    return flat_text(el)
