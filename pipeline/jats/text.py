"""Inline-text policy: how the content of one JATS block element becomes the text a person reads.

- Inline markup (italic, bold, sup, sub, sc, xref, ext-link, named-content ...) contributes its text
  exactly where it stands, with no space added: `The <italic>E. coli</italic> strain` reads
  "The E. coli strain" and `CD4<sup>+</sup>` reads "CD4+". Spaces come only from the source.
- Block content nested in a paragraph (lists, quotes, display formulas, line breaks) is set off by
  a soft separator that becomes one space, except before closing punctuation / after an opening one.
- Citations keep the text the publisher printed ("[12]", "(Smith et al., 2010)"); a superscript
  citation (`<sup><xref ref-type="bibr">12</xref></sup>`) becomes " [12]" so numbers do not glue onto
  words. Footnote marks (`xref` to fn / table-fn) are dropped. A numeric superscript right after a
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
from collections.abc import Callable

from lxml import etree

MATHML_NS = "http://www.w3.org/1998/Math/MathML"

# Soft separator: str.split() treats \x1f as whitespace, so normalisation turns it into a space.
SEP = "\x1f"

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
    body = " ".join(body.split())
    return f"${body}$" if body else ""


def mathml_text(math: etree._Element) -> str:
    """A MathML formula as linear text: its alttext when given, else its characters in order."""
    alt = math.get("alttext")
    if alt and alt.strip():
        return " ".join(alt.split())
    return "".join(t for t in math.itertext() if isinstance(t, str)).strip()


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
    out: list[str] = []
    _walk(el, out, skip_label=True)
    return "".join(out)


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


def _h_skip(el: etree._Element, out: list[str]) -> None:
    return None


def _h_block(el: etree._Element, out: list[str]) -> None:
    out.append(SEP)
    _walk(el, out)
    out.append(SEP)


def _h_formula(el: etree._Element, out: list[str]) -> None:
    name = local_name(el.tag)
    if name == "inline-formula":
        out.append(formula_text(el))
    else:
        out.append(SEP)
        out.append(formula_text(el))
        out.append(SEP)


def _h_math(el: etree._Element, out: list[str]) -> None:
    out.append(mathml_text(el))


def _h_tex(el: etree._Element, out: list[str]) -> None:
    out.append(tex_text(el.text or ""))


def _h_xref(el: etree._Element, out: list[str]) -> None:
    rt = el.get("ref-type")
    if rt in ("fn", "table-fn"):
        return
    if rt == "bibr" and len(el) == 1 and isinstance(el[0].tag, str) and local_name(el[0].tag) == "sup" \
            and not (el.text or "").strip():
        inner = "".join(el[0].itertext()).strip(" []")
        if inner:
            out.append(f"{SEP}[{inner}]")
        return
    _walk(el, out)


_EXPONENT = re.compile(r"[-−–+]?\d")


def _h_sup(el: etree._Element, out: list[str]) -> None:
    if len(el) and _only_citations(el):
        inner: list[str] = []
        _walk(el, inner)
        text = "".join(inner).strip(" []()")
        if text:
            out.append(f"{SEP}[{text}]")
        return
    t = el.text
    # A numeric superscript right after a digit is an exponent: "10<sup>6</sup>" -> "10^6", not "106".
    if t and out and out[-1] and out[-1][-1].isdigit() and _EXPONENT.match(t):
        out.append("^")
    _walk(el, out)


def _h_break(el: etree._Element, out: list[str]) -> None:
    out.append(SEP)


def _h_alternatives(el: etree._Element, out: list[str]) -> None:
    # Outside a formula, alternatives hold renditions of the same thing: take the first with text.
    out.append(formula_text(el))


HANDLERS: dict[str, Callable[[etree._Element, list[str]], None]] = {
    **{n: _h_skip for n in SKIP},
    **{n: _h_block for n in BLOCK},
    **{n: _h_formula for n in FORMULA},
    "math": _h_math,
    "tex-math": _h_tex,
    "xref": _h_xref,
    "sup": _h_sup,
    "break": _h_break,
    "alternatives": _h_alternatives,
}


def _walk(el: etree._Element, out: list[str], skip_label: bool = False) -> None:
    t = el.text
    if t:
        out.append(t)
    handlers = HANDLERS
    for ch in el:
        tag = ch.tag
        if type(tag) is str:  # elements; comments, PIs and entity references have a non-str tag
            name = tag if tag[0] != "{" else tag.rpartition("}")[2]
            h = handlers.get(name)
            if h is None:
                _walk(ch, out)
            elif not (skip_label and name == "label"):
                h(ch, out)
        tail = ch.tail
        if tail:
            out.append(tail)


_SEP_BEFORE_CLOSE = re.compile(r"\s*\x1f[\s\x1f]*(?=[,.;:!?)\]}%])")
_SEP_AFTER_OPEN = re.compile(r"(?<=[(\[{])[\s\x1f]*\x1f\s*")


def normalize(raw: str) -> str:
    """Soft separators resolved, whitespace collapsed to single spaces, ends stripped."""
    if SEP in raw:
        raw = _SEP_BEFORE_CLOSE.sub("", raw)
        raw = _SEP_AFTER_OPEN.sub("", raw)
    return " ".join(raw.split())


def inline_text(el: etree._Element) -> str:
    """The readable text of a block element (a paragraph, a title), per the policy above."""
    if len(el) == 0:
        t = el.text
        return " ".join(t.split()) if t else ""
    out: list[str] = []
    _walk(el, out)
    return normalize("".join(out))
