"""Bad and hostile XML: each case is a RecordError with a clear reason, never a crash, a network
access or a local file read; memory stays bounded."""

from __future__ import annotations

import http.server
import os
import threading
from pathlib import Path

import pytest

from pipeline.core.errors import RecordError, RejectReason
from pipeline.jats import parse_article
from pipeline.jats.xml import parse_xml, parse_xml_with_doctype

GOOD = b'<article><front><article-meta><article-id pub-id-type="pmc">123</article-id></article-meta></front><body><p>Hello world.</p></body></article>'


def reason_of(data: bytes, **kw: object) -> tuple[RejectReason, str]:
    with pytest.raises(RecordError) as ei:
        parse_article(data, "x.xml", min_tokens=0, **kw)
    return ei.value.reason, ei.value.detail


def test_good_minimal_article_parses():
    r = parse_article(GOOD, "x.xml", min_tokens=0)
    assert r.article.pmcid == "PMC123"
    assert [p.text for p in r.paragraphs] == ["Hello world."]


@pytest.mark.parametrize("data", [b"", b"   \n\t  "])
def test_empty_file(data):
    assert reason_of(data)[0] == RejectReason.EMPTY_FILE


def test_too_large_is_rejected_before_parsing():
    reason, detail = reason_of(GOOD + b" " * 2000, max_bytes=1000)
    assert reason == RejectReason.TOO_LARGE and "limit 1000" in detail


def test_truncated_file():
    reason, detail = reason_of(GOOD[: len(GOOD) // 2])
    assert reason == RejectReason.MALFORMED_XML and detail.startswith("truncated")


@pytest.mark.parametrize("data", [b"%PDF-1.4\n%...", b"just some text", b"\x89PNG\r\n\x1a\n"])
def test_not_xml(data):
    reason, detail = reason_of(data)
    assert reason == RejectReason.MALFORMED_XML and "not XML" in detail


def test_html_is_malformed():
    assert reason_of(b"<html><body><p>a<br></p></body></html>")[0] == RejectReason.MALFORMED_XML


def test_well_formed_but_not_an_article():
    reason, detail = reason_of(b"<rss><channel><title>x</title></channel></rss>")
    assert reason == RejectReason.NOT_AN_ARTICLE and "<rss>" in detail


def test_latin1_bytes_declared_utf8():
    data = '<?xml version="1.0" encoding="UTF-8"?><article><body><p>café</p></body></article>'.encode("latin-1")
    assert reason_of(data)[0] == RejectReason.BAD_ENCODING


def test_unknown_encoding_name():
    assert reason_of(b'<?xml version="1.0" encoding="klingon"?><article/>')[0] == RejectReason.BAD_ENCODING


def test_declared_latin1_is_decoded():
    data = '<?xml version="1.0" encoding="ISO-8859-1"?><article><front><article-meta><article-id pub-id-type="pmc">1</article-id></article-meta></front><body><p>café</p></body></article>'.encode("latin-1")
    assert parse_article(data, "x.xml", min_tokens=0).paragraphs[0].text == "café"


@pytest.mark.parametrize("enc", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_with_doctype_is_decoded(enc):
    text = ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE article PUBLIC "-//NLM//DTD x//EN" "x.dtd">'
            '<article><front><article-meta><article-id pub-id-type="pmc">2</article-id></article-meta></front>'
            '<body><p>naïve café</p></body></article>')
    data = text.encode(enc)
    if enc != "utf-16":  # explicit BOM for the fixed-endian variants
        data = ("\ufeff" + text).encode(enc)
    assert parse_article(data, "x.xml", min_tokens=0).paragraphs[0].text == "naïve café"


def test_numeric_character_references_decoded():
    data = b'<article><front><article-meta><article-id pub-id-type="pmc">1</article-id></article-meta></front><body><p>&#169; 37&#x000b0;C &#x003b1;-helix</p></body></article>'
    assert parse_article(data, "x.xml", min_tokens=0).paragraphs[0].text == "© 37°C α-helix"


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE article [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<article><front><article-meta><article-id pub-id-type="pmc">1</article-id></article-meta></front><body><p>&lol9;</p></body></article>"""


def test_billion_laughs_is_rejected_without_expansion():
    reason, detail = reason_of(BILLION_LAUGHS)
    assert reason == RejectReason.MALFORMED_XML
    assert "entity" in detail.lower() and "never expanded" in detail


def test_internal_entity_declared_but_unused_parses():
    data = BILLION_LAUGHS.replace(b"<p>&lol9;</p>", b"<p>no bomb here</p>")
    assert parse_article(data, "x.xml", min_tokens=0).paragraphs[0].text == "no bomb here"


@pytest.fixture()
def secret(tmp_path: Path) -> Path:
    p = tmp_path / "secret.txt"
    p.write_text("TOPSECRET-CONTENT")
    return p


def test_external_entity_to_local_file_never_read(secret: Path):
    data = (f'<?xml version="1.0"?><!DOCTYPE article [<!ENTITY xxe SYSTEM "file://{secret}">]>'
            f'<article><body><p>a &xxe; b</p></body></article>').encode()
    reason, detail = reason_of(data)
    assert reason == RejectReason.MALFORMED_XML
    assert "TOPSECRET" not in detail


@pytest.fixture()
def fifo(tmp_path: Path) -> Path:
    """A named pipe with no writer: any attempt by libxml2 to read it would block the test (and time out)."""
    p = tmp_path / "trap.fifo"
    os.mkfifo(p)
    return p


@pytest.mark.parametrize(
    "template",
    [
        '<!DOCTYPE article [<!ENTITY % pe SYSTEM "file://{path}"> %pe;]><article><body><p>ok</p></body></article>',
        '<!DOCTYPE article SYSTEM "file://{path}"><article><body><p>ok</p></body></article>',
        '<!DOCTYPE article PUBLIC "-//x//EN" "{path}"><article><body><p>ok &amp; fine</p></body></article>',
    ],
    ids=["parameter-entity", "external-subset", "relative-dtd"],
)
@pytest.mark.timeout(20)
def test_dtd_and_parameter_entities_never_opened(fifo: Path, template: str):
    data = template.format(path=fifo).encode()
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(parse_xml(data)), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "the parser tried to open the DTD / entity file"
    assert result and result[0].tag == "article"


class _Counter(http.server.BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'<!ENTITY leak "LEAKED">')

    def log_message(self, *args: object) -> None:
        pass


def test_no_network_access_for_dtd_or_entities():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Counter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/x.dtd"
    try:
        docs = [
            f'<!DOCTYPE article SYSTEM "{url}"><article><body><p>a</p></body></article>',
            f'<!DOCTYPE article [<!ENTITY % pe SYSTEM "{url}"> %pe;]><article><body><p>a</p></body></article>',
            f'<!DOCTYPE article [<!ENTITY xxe SYSTEM "{url}">]><article><body><p>&xxe;</p></body></article>',
        ]
        for d in docs:
            try:
                root = parse_xml(d.encode())
                assert b"LEAKED" not in __import__("lxml.etree").etree.tostring(root)
            except RecordError:
                pass
        assert _Counter.hits == 0
    finally:
        server.shutdown()


def test_doctype_kept_as_dtd_version_only():
    root, doctype = parse_xml_with_doctype(
        b'<!DOCTYPE article PUBLIC "-//NLM//DTD Journal Archiving and Interchange DTD v2.3 20070202//EN" "archivearticle.dtd">\n<article/>'
    )
    assert root.tag == "article"
    assert doctype is not None and doctype.public_id.startswith("-//NLM//DTD Journal Archiving")
    assert doctype.name == "article" and not doctype.internal_subset


@pytest.mark.parametrize(
    "decl",
    [
        b"""<!DOCTYPE article PUBLIC "-//x>y//EN" 'a>b.dtd'>""",  # '>' inside quotes: the one-match path
        b"""<!DOCTYPE article SYSTEM "s.dtd" [<!ENTITY e "x>y]">]>""",  # internal subset: the byte loop
    ],
)
def test_doctype_end_found_past_quoted_and_bracketed_gt(decl):
    root, doctype = parse_xml_with_doctype(decl + b"\n<article><body><p>ok</p></body></article>")
    assert root.tag == "article" and root.findtext("body/p") == "ok"
    assert doctype is not None and doctype.name == "article"


def test_deeply_nested_input_is_bounded():
    depth = 100_000  # beyond libxml2's default depth limit (huge_tree=False)
    data = b"<article><body>" + b"<list-item>" * depth + b"x" + b"</list-item>" * depth + b"</body></article>"
    assert reason_of(data)[0] == RejectReason.MALFORMED_XML
