"""License normalisation: short name + may-the-text-be-used-commercially flag.

Resolution order (docs/licenses.md): the metadata's license code when the input has one (the PMC
Cloud JSON's `license_code`, a file list's `License`: `resolve_license`), then
`<ali:license_ref specific-use="textmining">`, then PMC's `pmc-license-ref` custom-meta, then the
publisher's `<license>`. For the publisher's `<license>`, evidence, strongest first: a license URL (`<license xlink:href>`, `<ali:license_ref>`, an
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

from pipeline.jats.meta import child
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


_CC0_CODE = re.compile(r"^\s*cc[\s\-_]*(?:0|zero)\b")
_CODE = re.compile(r"^\s*cc[\s\-_]*(by(?:[\s\-_]*(?:nc|nd|sa))*)\b", re.I)


def from_code(code: str | None) -> str | None:
    """A license code as PMC's metadata gives it -> our short name: "CC BY-NC-ND", "cc-by 4.0", "CC0",
    "public domain" as themselves; "TDM" (may be text-mined, no CC license) -> "other"; None for no code
    or one that names no license ("NO-CC CODE")."""
    if not code or not code.strip():
        return None
    c = code.strip()
    low = c.lower()
    if low == "tdm":
        return "other"
    if _CC0_CODE.match(low):
        return "CC0"
    if "public domain" in low or low in ("pd", "pdm"):
        return "public domain"
    m = _CODE.match(c)
    if not m:
        return None
    parts = set(re.split(r"[\s\-_]+", m.group(1).lower()))
    return _from_flags(nc="nc" in parts, nd="nd" in parts, sa="sa" in parts)


def _textmining(article_meta: etree._Element) -> License | None:
    """`<ali:license_ref specific-use="textmining">`: the license PMC states for text mining."""
    for el in article_meta.iter("{*}license_ref"):
        if (el.get("specific-use") or "").lower() == "textmining" and el.text:
            name = from_url(el.text.strip())
            if name:
                return License(name, el.text.strip(), name in COMMERCIAL)
    return None


def _pmc_license_ref(article_meta: etree._Element) -> License | None:
    """PMC's `<custom-meta><meta-name>pmc-license-ref</meta-name><meta-value>CC BY</meta-value>`."""
    for cm in article_meta.iter("custom-meta"):
        mn = child(cm, "meta-name")  # findtext("meta-name"), without ElementPath
        if mn is not None and (mn.text or "").strip() == "pmc-license-ref":
            mv = child(cm, "meta-value")
            name = from_code(None if mv is None else (mv.text or ""))
            if name:
                return License(name, None, name in COMMERCIAL)
    return None


def resolve_license(license_code: str | None, xml_license: License) -> tuple[License, bool | None]:
    """The article's license given the metadata's code and what the XML says; and whether they agree
    (None when the code names no license). The code wins; the XML's URL is kept when it says the same."""
    name = from_code(license_code)
    if name is None:
        return xml_license, None
    agrees = name == xml_license.name
    return License(name, xml_license.url if agrees else None, name in COMMERCIAL), agrees


def extract_license(article_meta: etree._Element | None) -> License:
    """The article's license from the XML alone (see module docstring for the order of evidence)."""
    if article_meta is None:
        return License("none", None, False)
    found_pmc = _textmining(article_meta) or _pmc_license_ref(article_meta)
    if found_pmc is not None:
        if found_pmc.url is None:  # keep the publisher's URL for the same license
            pub = _publisher_license(article_meta)
            if pub.name == found_pmc.name:
                return pub
        return found_pmc
    return _publisher_license(article_meta)


def _publisher_license(article_meta: etree._Element) -> License:
    """The publisher's `<license>` (and copyright statement)."""
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
