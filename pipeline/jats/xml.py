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

import bisect
import re
import threading
from dataclasses import dataclass

from lxml import etree

from pipeline.core.errors import RecordError, RejectReason

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


_BACK_OPEN = re.compile(rb"<back[\s>]")


def _inside_comment_or_cdata(data: bytes, start: int, pos: int) -> bool:
    k = data.rfind(b"<!--", start, pos)
    if k >= 0 and data.find(b"-->", k, pos) < 0:
        return True
    k = data.rfind(b"<![CDATA[", start, pos)
    return k >= 0 and data.find(b"]]>", k, pos) < 0


# A comment or CDATA section starts with "<!" (the DOCTYPE is gone by now, and "<" is escaped
# everywhere else), and "!" is rare in articles: hopping from one "!" to the next is a memchr, far
# cheaper than the backward searches for "<!--" and "<![CDATA[" the guard would otherwise repeat.
_MAX_BANGS = 256


def _markup_starts(data: bytes) -> tuple[list[int], list[int]] | None:
    """Sorted positions of every `<!--` and every `<![CDATA[` in the bytes, or None when the file
    has so many "!" that hopping over them would cost more than the searches it replaces."""
    comments: list[int] = []
    cdatas: list[int] = []
    find = data.find
    i = find(b"!", 1)
    n = 0
    while i >= 0:
        n += 1
        if n > _MAX_BANGS:
            return None
        if data[i - 1] == 0x3C:  # "<!"
            if data.startswith(b"--", i + 1):
                comments.append(i - 1)
            elif data.startswith(b"[CDATA[", i + 1):
                cdatas.append(i - 1)
        i = find(b"!", i + 1)
    return comments, cdatas


def _inside_marked(data: bytes, start: int, pos: int, marks: tuple[list[int], list[int]]) -> bool:
    """`_inside_comment_or_cdata` from the positions `_markup_starts` found (the same answer: the
    last `<!--` / `<![CDATA[` that fits in [start, pos), then its end searched as there)."""
    comments, cdatas = marks
    if comments:
        j = bisect.bisect_right(comments, pos - 4) - 1
        if j >= 0 and comments[j] >= start and data.find(b"-->", comments[j], pos) < 0:
            return True
    if cdatas:
        j = bisect.bisect_right(cdatas, pos - 9) - 1
        if j >= 0 and cdatas[j] >= start and data.find(b"]]>", cdatas[j], pos) < 0:
            return True
    return False


_AFTER_NAME = (b" ", b">", b"/", b"\n", b"\t", b"\r")


def _next_open(data: bytes, needle: bytes, start: int, before: int = -1) -> int:
    """Position of the first `needle` (b"<" + name) at or after `start` that is a start tag of that
    name (the name ends there), and, when before >= 0, begins before it; -1 when there is none."""
    n = len(needle)
    end = before + n - 1 if before >= 0 else len(data)
    i = data.find(needle, start, end)
    while i >= 0:
        if data[i + n : i + n + 1] in _AFTER_NAME:
            return i
        i = data.find(needle, i + 1, end)
    return -1


def _cut(data: bytes, names: tuple[bytes, ...]) -> tuple[bytes, int] | None:
    """The bytes with every top-level `<name ...>...</name>` of the given names removed, and how
    many sub-articles went; None when a cut is not certainly safe (a start tag in a comment or
    CDATA, no end tag). Tails are kept: only the element's
    own bytes go, so the text around it and the positions of other elements are unchanged."""
    # Everything cut comes after the main article's </body> (JATS order: front, body, back,
    # floats-group, sub-article), so the search starts there.
    begin = data.find(b"</body>")
    marks = _markup_starts(data)
    if marks is None:
        def inside(s: int, p: int) -> bool:
            return _inside_comment_or_cdata(data, s, p)
    elif not marks[0] and not marks[1]:
        def inside(s: int, p: int) -> bool:  # no comment and no CDATA in the file
            return False
    else:
        def inside(s: int, p: int) -> bool:
            return _inside_marked(data, s, p, marks)
    if begin < 0:
        begin = 0
    elif inside(0, begin):
        return None
    # The elements are cut in document order: each time, the first start tag of any name after
    # what was already cut. A name's search stops at the earliest start found so far, so the bytes
    # of an element being cut (a <back> is ~35% of a file) are not searched for the other names;
    # bytes.find per name (memchr speed) instead of one regex alternation, which scans every "<".
    needles = [(name, b"<" + name) for name in names]
    known: dict[bytes, int] = {}  # name -> its first start at or after `search` (-1: none to the end)
    clear: dict[bytes, int] = {}  # name -> searched up to here: no start of it in [search, clear)
    pieces: list[bytes] = []
    pos = 0
    search = begin
    n_sub = 0
    while True:
        start, name = -1, b""
        for nm, nd in needles:
            i = known.get(nm, -2)
            if i == -2 or 0 <= i < search:
                lo = max(search, clear.get(nm, 0))
                if 0 <= start <= lo:
                    continue  # none of it before the start already found
                i = _next_open(data, nd, lo, start)
                if i >= 0 or start < 0:  # its next start, or certainly none to the end
                    known[nm] = i
                else:
                    known[nm] = -2
                    clear[nm] = start
            if i >= 0 and (start < 0 or i < start):
                start, name = i, nm
        if start < 0:
            break
        if inside(max(pos, begin), start):
            return None
        tag_end = data.find(b">", start)
        if tag_end < 0:
            return None
        if data[tag_end - 1] == 0x2F:  # "/>": an empty element
            end = tag_end + 1
        else:
            # The matching end tag, counting same-name elements nested inside (sub-articles nest):
            # one search for the bare name finds both its start tags and its end tags. `cur` is
            # where the last end tag ended (at first the start tag's ">"); a start tag counts when
            # it begins after it, as before (one right at `cur` never did).
            n = len(name)
            depth, cur = 1, tag_end
            h = data.find(name, cur + 2)  # any start tag after cur, any end tag at or after it
            while True:
                if h < 0:
                    return None  # no end tag
                before = data[h - 1]
                if before == 0x3C:  # "<name"
                    if h - 1 > cur and data[h + n : h + n + 1] in _AFTER_NAME:
                        depth += 1
                elif before == 0x2F and data[h - 2] == 0x3C and data[h + n : h + n + 1] == b">":  # "</name>"
                    depth -= 1
                    cur = h + n + 1
                    if not depth:
                        break
                h = data.find(name, h + 1)
            if inside(tag_end, cur):
                return None
            end = cur
        pieces.append(data[pos:start])
        pos = search = end
        if name == b"sub-article":
            n_sub += 1
    if not pieces:
        return data, 0
    pieces.append(data[pos:])
    return b"".join(pieces), n_sub


def without_back(data: bytes) -> bytes | None:
    """The bytes with the main article's `<back>...</back>` cut out, or None when that is not
    certainly safe. <back> (references, acknowledgements, notes) is ~35% of a PMC file and nothing
    the parser extracts comes from it; not building it saves that share of the parse. JATS puts
    <back> after <body>, so the body's paragraphs and their positions are unchanged."""
    m = _BACK_OPEN.search(data)
    if m is None:
        return None
    i = m.start()
    j = data.find(b"</back>", i)
    if j < 0 or _inside_comment_or_cdata(data, 0, i) or _inside_comment_or_cdata(data, i, j):
        return None
    return data[:i] + data[j + 7 :]


# Elements after <body> whose content the extraction never reads (~40% of a PMC file's bytes):
# <back> (references), <floats-group> and sub-articles (counted, never read as body text). Tables
# and figures inside <body> would save ~10% more, but finding their many small spans costs more
# time than the parse saves.
SHRINK = (b"back", b"floats-group", b"sub-article")


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
