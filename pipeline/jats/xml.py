"""A hardened XML parser for untrusted JATS: no network, no DTD, no entity expansion, bounded size.

Every failure is a `RecordError` with a reason from the fixed vocabulary, so a bad file becomes a
reject row instead of crashing the run.

Why the DOCTYPE is cut out before parsing: libxml2 (2.14) still opens the *file* named by an
external parameter entity (`<!ENTITY % x SYSTEM "file:///etc/passwd"> %x;`) or by the external
subset in some cases, even with `load_dtd=False` and `resolve_entities=False`, and lxml's resolvers
are not consulted for those loads. JATS never needs its DTD to be read (PMC files use numeric
character references only), so removing the declaration is the one defence that leaves libxml2
nothing to fetch. Entities declared in an internal subset go with it: a document that uses them
(billion laughs, XXE) is rejected as "undefined entity" instead of being expanded.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from lxml import etree

from pipeline.core.errors import RecordError, RejectReason
from pipeline.jats.cut import SHRINK, _cut, without_back

# Larger than any real PMC-OA article (almost all are < 2 MB, the largest tens of MB); a bigger
# file is almost certainly not one article and is rejected before parsing (--max-file-mb).
DEFAULT_MAX_BYTES = 64 * 1024 * 1024

# Why each option (the DOCTYPE is already gone, these are defence in depth):
#   resolve_entities=False  entities stay unexpanded, external ones are never read;
#   load_dtd=False          no DTD is read; no_network=True: libxml2 refuses network access;
#   huge_tree=False         keeps libxml2's limits on depth, text size and entity amplification;
#   remove_comments/pis     comments and processing instructions are never text (PMC uses both).
_PARSER_OPTIONS = dict(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
    collect_ids=False,
    recover=False,
)

_local = threading.local()


def safe_parser(keep_comments: bool = False) -> etree.XMLParser:
    """The hardened parser, one per thread (lxml parsers must not be shared between threads).

    keep_comments: the same parser but comments and processing instructions stay in the tree (for
    reproducing another tool's itertext() output, pipeline/jats/biomed_enriched.py)."""
    attr = "parser_keep" if keep_comments else "parser"
    p = getattr(_local, attr, None)
    if p is None:
        opts = {**_PARSER_OPTIONS, "remove_comments": False, "remove_pis": False} if keep_comments else _PARSER_OPTIONS
        p = etree.XMLParser(**opts)
        setattr(_local, attr, p)
    return p


@dataclass(frozen=True)
class Doctype:
    """What the removed DOCTYPE declared (kept for dtd_version), and whether it had an internal subset."""

    name: str | None  # the root element it declares ("article", "pmc-articleset")
    public_id: str | None
    system_id: str | None
    internal_subset: bool


_DOCTYPE_IDS = re.compile(rb"""(?:PUBLIC\s+(["'])(.*?)\1\s*(?:(["'])(.*?)\3)?|SYSTEM\s+(["'])(.*?)\5)""", re.S)


_SIMPLE_DOCTYPE = re.compile(rb"""<!DOCTYPE(?:[^"'\[\]>]|"[^"]*"|'[^']*')*+>""")
_FIRST_ELEMENT = re.compile(rb"<[A-Za-z_]")
_DOCTYPE_NAME = re.compile(rb"<!DOCTYPE\s+([^\s\[>]+)")


def _find_doctype(data: bytes, limit: int = 65536) -> tuple[int, int] | None:
    """(start, end) of a `<!DOCTYPE ...>` in the prolog, quotes and an internal subset included."""
    # Only a DOCTYPE before the root element counts (the text "<!DOCTYPE" inside a CDATA is not
    # one), so it is looked for only before the first start tag: a file without one is not searched
    # for 64 kB.
    first_elem = _FIRST_ELEMENT.search(data, 0, limit)
    start = data.find(b"<!DOCTYPE", 0, limit if first_elem is None else min(limit, first_elem.start() + 8))
    if start < 0:
        return None
    # The usual declaration: no bracket, no apostrophe and paired double quotes up to its first ">",
    # which is then the end that _SIMPLE_DOCTYPE would match (a ">" inside quotes leaves an odd
    # number of quotes before it); checked by C-level counts instead of the regex's per-byte loop.
    gt = data.find(b">", start)
    if gt >= 0:
        decl = data[start:gt]
        if not decl.count(b'"') % 2 and b"'" not in decl and b"[" not in decl and b"]" not in decl:
            return start, gt + 1
    # Otherwise the regex (quoted ">"); an internal subset takes the loop below.
    m = _SIMPLE_DOCTYPE.match(data, start)
    if m is not None:
        return start, m.end()
    i, n = start + 9, len(data)
    quote = 0
    depth = 0
    while i < n:
        c = data[i]
        if quote:
            if c == quote:
                quote = 0
        elif c in (0x22, 0x27):  # " '
            quote = c
        elif c == 0x5B:  # [
            depth += 1
        elif c == 0x5D:  # ]
            depth -= 1
        elif c == 0x3E and depth <= 0:  # >
            return start, i + 1
        i += 1
    raise RecordError(RejectReason.MALFORMED_XML, "truncated: unterminated DOCTYPE declaration")


def _strip_doctype(data: bytes) -> tuple[bytes, Doctype | None]:
    span = _find_doctype(data)
    if span is None:
        return data, None
    decl = data[span[0] : span[1]]
    m = _DOCTYPE_IDS.search(decl.split(b"[", 1)[0])
    public_id = system_id = None
    if m:
        if m.group(2) is not None:
            public_id = m.group(2).decode("ascii", "replace")
            system_id = m.group(4).decode("ascii", "replace") if m.group(4) is not None else None
        else:
            system_id = m.group(6).decode("ascii", "replace")
    nm = _DOCTYPE_NAME.match(decl)
    name = nm.group(1).decode("ascii", "replace") if nm else None
    doctype = Doctype(name, public_id, system_id, b"[" in decl)
    # Newlines are kept so libxml2's line numbers in error messages still match the file.
    return data[: span[0]] + b"\n" * decl.count(b"\n") + data[span[1] :], doctype


_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")


def _to_ascii_compatible(data: bytes) -> bytes:
    """UTF-16/32 input (BOM or NULs in the head) re-encoded as UTF-8, so the DOCTYPE scan sees bytes."""
    head = data[:4]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:64]:
        for enc in ("utf-32", "utf-16") if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")) \
                else ("utf-16", "utf-32"):
            try:
                text = data.decode(enc)
                break
            except UnicodeDecodeError:
                continue
        else:
            raise RecordError(RejectReason.BAD_ENCODING, "NUL bytes in the head and not valid UTF-16/32")
        return _XML_DECL.sub("", text, count=1).encode("utf-8")
    return data


def parse_for_extraction(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[etree._Element, Doctype | None, int]:
    """(root, DOCTYPE, sub-articles cut) with the elements in SHRINK left out of the tree when that
    is certainly safe; otherwise (or if the shortened bytes do not parse) the whole file is
    parsed, so errors are reported on the real input."""
    data, doctype = _prologue(data, max_bytes)
    cut = _cut(data, SHRINK)
    if cut is not None and cut[0] is not data:
        try:
            root = etree.fromstring(cut[0], safe_parser())
            if root is not None:
                return root, doctype, cut[1]
        except etree.XMLSyntaxError:
            pass
    return _parse(data, doctype), doctype, 0


def _prologue(data: bytes, max_bytes: int) -> tuple[bytes, Doctype | None]:
    """Size and emptiness checks, UTF-16/32 re-encoding, DOCTYPE removal."""
    if len(data) > max_bytes:
        raise RecordError(
            RejectReason.TOO_LARGE, f"{len(data)} bytes > limit {max_bytes} bytes (--max-file-mb)"
        )
    if not data or data.isspace():
        raise RecordError(RejectReason.EMPTY_FILE, f"{len(data)} bytes, no content")
    data = _to_ascii_compatible(data)
    head = data[:64].lstrip()
    if not head.startswith((b"<", b"\xef\xbb\xbf")):
        raise RecordError(RejectReason.MALFORMED_XML, f"not XML: starts with {data[:16]!r}")
    return _strip_doctype(data)


def _parse(data: bytes, doctype: Doctype | None, keep_comments: bool = False) -> etree._Element:
    try:
        root = etree.fromstring(data, safe_parser(keep_comments))
    except etree.XMLSyntaxError as e:
        # A file cut short rarely ends exactly after a '>' (and when it does libxml2 says "premature end").
        cut = not data.rstrip().endswith(b">")
        raise _classify(str(e), doctype, cut) from None
    if root is None:
        raise RecordError(RejectReason.MALFORMED_XML, "no root element")
    return root


def parse_xml_with_doctype(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, skip_back: bool = False, keep_comments: bool = False
) -> tuple[etree._Element, Doctype | None]:
    """Parse untrusted XML bytes into (root element, removed DOCTYPE), or raise RecordError.

    skip_back: leave the article's <back> out of the tree (see `without_back`); if the shortened
    bytes do not parse, the whole file is parsed so errors are reported on the real input.
    keep_comments: keep comments and processing instructions (see `safe_parser`; not with skip_back)."""
    data, doctype = _prologue(data, max_bytes)
    if skip_back:
        short = without_back(data)
        if short is not None:
            try:
                root = etree.fromstring(short, safe_parser())
                if root is not None:
                    return root, doctype
            except etree.XMLSyntaxError:
                pass  # parse the whole file below, for the real error message
    return _parse(data, doctype, keep_comments), doctype


def parse_xml(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> etree._Element:
    """Parse untrusted XML bytes into a root element, or raise RecordError with the reason."""
    return parse_xml_with_doctype(data, max_bytes=max_bytes)[0]


def _classify(msg: str, doctype: Doctype | None, cut: bool = False) -> RecordError:
    low = msg.lower()
    detail = msg[:300]
    if "entity" in low:
        hint = " (its DOCTYPE internal subset was removed: entities are never expanded)" \
            if doctype and doctype.internal_subset else ""
        return RecordError(RejectReason.MALFORMED_XML, f"undefined or unsafe entity: {detail}{hint}")
    if "encoding" in low or "invalid bytes" in low or "not proper utf" in low or "bytes:" in low:
        return RecordError(RejectReason.BAD_ENCODING, detail)
    if cut or "premature end" in low or "end of data" in low or "eof" in low or "not properly terminated" in low:
        return RecordError(RejectReason.MALFORMED_XML, f"truncated: {detail}")
    return RecordError(RejectReason.MALFORMED_XML, detail)
