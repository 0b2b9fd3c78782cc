"""License normalisation: short name + may-the-text-be-used-commercially flag.

Evidence, strongest first: a license URL (`<license xlink:href>`, `<ali:license_ref>`, an
`<ext-link>`/`<uri>` inside `<license>`), then the wording of `<license-p>`, then the
`@license-type` vocabulary (`cc-by-nc`, `creativeCommonsBy-nc-nd` ...), then the
`<copyright-statement>` (some old files state the license only there). When several Creative
Commons licenses appear (BMC: "CC BY" for the article + "CC0" for data), the most restrictive one
is the article's. A `<license>` with none of these is publisher terms: "other". No `<license>`
and nothing in the copyright statement: "none". See docs/licenses.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from pipeline.jats.text import inline_text, local_name

XLINK_HREF = "{http://www.w3.org/1999/xlink}href"

# Ordered from least to most restrictive; the article gets the most restrictive one it mentions.
RANK = ["public domain", "CC0", "CC BY", "CC BY-SA", "CC BY-ND", "CC BY-NC", "CC BY-NC-SA", "CC BY-NC-ND"]
# PMC's own "commercial use allowed" split: every license without NC. ND forbids adaptations, not
# commercial use; "other" (publisher terms) and "none" are treated as not commercial.
COMMERCIAL = frozenset({"public domain", "CC0", "CC BY", "CC BY-SA", "CC BY-ND"})

_CC_URL = re.compile(r"creativecommons\.org/licen[sc]es/([a-z\-]+)", re.I)
_CC_PD = re.compile(r"creativecommons\.org/publicdomain/(zero|mark)", re.I)
_URL_IN_TEXT = re.compile(r"https?://[^\s<>\"')]+", re.I)


@dataclass(frozen=True)
class License:
    """A normalised license: short name, URL it came from (if any), commercial-use flag."""

    name: str
    url: str | None
    commercial: bool


def from_url(url: str) -> str | None:
    """`https://creativecommons.org/licenses/by-nc/4.0/` -> "CC BY-NC"; None when not a CC URL."""
    m = _CC_PD.search(url)
    if m:
        return "CC0" if m.group(1).lower() == "zero" else "public domain"
    m = _CC_URL.search(url)
    if not m:
        return None
    parts = [p for p in m.group(1).lower().split("-") if p]
    if not parts or parts[0] != "by":
        return None
    return _from_flags(nc="nc" in parts, nd="nd" in parts, sa="sa" in parts)


def _from_flags(*, nc: bool, nd: bool, sa: bool) -> str:
    name = "CC BY"
    if nc:
        name += "-NC"
    if nd:
        name += "-ND"
    elif sa:
        name += "-SA"
    return name


_ATTRIB = re.compile(r"creative\s*commons[\s\-]*(?:attribution|by\b)|\bcc[\s\-]?by\b", re.I)
_NC = re.compile(r"non[\s\-–]*commercial|\bnc\b", re.I)
_ND = re.compile(r"no[\s\-–]*deriv|\bnd\b", re.I)
_SA = re.compile(r"share[\s\-–]*alike|\bsa\b", re.I)
_CC0 = re.compile(r"\bcc0\b|cc\s*zero|public\s+domain\s+dedication", re.I)
_PD = re.compile(r"\bpublic\s+domain\b", re.I)
_BARE_ATTRIB = re.compile(r"attribution[\s\-–]*non[\s\-–]*commercial", re.I)


def from_text(text: str) -> list[str]:
    """Licenses named in prose ("distributed under the Creative Commons Attribution-NonCommercial License")."""
    found: list[str] = []
    for u in _URL_IN_TEXT.findall(text):
        n = from_url(u)
        if n:
            found.append(n)
    m = _ATTRIB.search(text) or _BARE_ATTRIB.search(text)
    if m:
        tail = text[m.start() : m.start() + 160]
        found.append(_from_flags(nc=bool(_NC.search(tail)), nd=bool(_ND.search(tail)), sa=bool(_SA.search(tail))))
    if _CC0.search(text):
        found.append("CC0")
    elif _PD.search(text) and not found:
        found.append("public domain")
    return found


_TYPE_MAP = {
    "cc-by": "CC BY", "ccby": "CC BY", "creativecommonsby": "CC BY",
    "cc-by-nc": "CC BY-NC", "ccbync": "CC BY-NC", "creativecommonsby-nc": "CC BY-NC",
    "cc-by-nc-nd": "CC BY-NC-ND", "creativecommonsby-nc-nd": "CC BY-NC-ND", "ccbyncnd": "CC BY-NC-ND",
    "cc-by-nc-sa": "CC BY-NC-SA", "creativecommonsby-nc-sa": "CC BY-NC-SA", "ccbyncsa": "CC BY-NC-SA",
    "cc-by-sa": "CC BY-SA", "cc-by-nd": "CC BY-ND", "cc0": "CC0", "public-domain": "public domain",
    "publicdomain": "public domain",
}


def _most_restrictive(names: list[str]) -> str:
    return max(names, key=RANK.index)


def extract_license(article_meta: etree._Element | None) -> License:
    """The article's license from its <permissions> (see module docstring for the order of evidence)."""
    if article_meta is None:
        return License("none", None, False)
    perms = [el for el in article_meta.iter("permissions")]
    licenses = [el for p in perms for el in p if isinstance(el.tag, str) and local_name(el.tag) == "license"]
    urls: list[str] = []
    for lic in licenses:
        href = lic.get(XLINK_HREF)
        if href:
            urls.append(href.strip())
        for el in lic.iter():
            if not isinstance(el.tag, str):
                continue
            name = local_name(el.tag)
            if name == "license_ref" and el.text:
                urls.append(el.text.strip())
            elif name in ("ext-link", "uri") and el.get(XLINK_HREF):
                urls.append(el.get(XLINK_HREF).strip())
            elif name in ("ext-link", "uri") and el.text and "://" in el.text:
                urls.append(el.text.strip())
    named = [(n, u) for u in urls if (n := from_url(u))]
    if named:
        best = _most_restrictive([n for n, _ in named])
        url = next(u for n, u in named if n == best)
        return License(best, url, best in COMMERCIAL)
    texts = [inline_text(lic) for lic in licenses]
    found = [n for t in texts for n in from_text(t)]
    if not found:
        for lic in licenses:
            key = (lic.get("license-type") or "").strip().lower().replace("_", "-")
            if key in _TYPE_MAP:
                found.append(_TYPE_MAP[key])
    if not found:
        # NLM 2.x files keep <copyright-statement> directly in <article-meta>, outside <permissions>.
        for el in article_meta.iter("copyright-statement"):
            found.extend(from_text(inline_text(el)))
    url = urls[0] if urls else None
    if found:
        best = _most_restrictive(found)
        return License(best, url, best in COMMERCIAL)
    if licenses:
        return License("other", url, False)
    return License("none", None, False)
