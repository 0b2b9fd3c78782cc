"""Cutting what the extraction never reads out of a JATS file's bytes before it is parsed.

<back> (references), <floats-group> and sub-articles are ~40% of a PMC file; leaving them out of the
tree saves that share of the parse. A cut is made only where it is certainly safe (the element is
not inside a comment or CDATA section); otherwise the caller parses the whole file (xml.py).
"""

from __future__ import annotations

import bisect
import re

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
