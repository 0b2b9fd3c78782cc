"""Builds a small mixed input tree for the parse-stage tests: good files, bad files, archives."""

from __future__ import annotations

import io
import random
import tarfile
from pathlib import Path

FIX = Path(__file__).parent / "fixtures" / "jats"


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def build_inputs(root: Path) -> dict[str, Path]:
    """root/xml/ (loose files) and root/pkg/ (archives). Returns named paths."""
    xml = root / "xml"
    pkg = root / "pkg"
    xml.mkdir(parents=True)
    pkg.mkdir(parents=True)
    inline = (FIX / "inline.xml").read_bytes()
    (xml / "inline.xml").write_bytes(inline)
    (xml / "wrapped_noprefix.nxml").write_bytes((FIX / "wrapped_noprefix.xml").read_bytes())
    (xml / "nobody.xml").write_bytes((FIX / "nobody.xml").read_bytes())
    (xml / "two_articles.xml").write_bytes((FIX / "two_articles.xml").read_bytes())
    (xml / "truncated.xml").write_bytes(inline[: len(inline) // 3])
    (xml / "empty.xml").write_bytes(b"")
    (xml / "notes.txt").write_text("not an input: wrong suffix, never read, a reject")
    # Hostile files: an entity bomb, an external entity aimed at a local file, wrong encoding, not XML.
    (xml / "bomb.xml").write_bytes(
        b'<?xml version="1.0"?><!DOCTYPE article [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
        b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;">]>'
        b'<article><front><article-meta><article-id pub-id-type="pmc">9000010</article-id></article-meta></front>'
        b"<body><p>&d;&d;&d;&d;&d;&d;&d;&d;</p></body></article>")
    (xml / "xxe.xml").write_bytes(
        b'<?xml version="1.0"?><!DOCTYPE article [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<article><front><article-meta><article-id pub-id-type="pmc">9000011</article-id></article-meta></front>'
        b"<body><p>&x;</p></body></article>")
    (xml / "latin1.xml").write_bytes(
        '<?xml version="1.0" encoding="UTF-8"?><article><body><p>fièvre</p></body></article>'.encode("latin-1"))
    (xml / "scan.xml").write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3 binary")
    # A good archive: one new article, one duplicate of inline.xml (same PMCID), one corrupt member,
    # one non-XML member (a PDF in a PMC package is skipped, not rejected).
    with tarfile.open(pkg / "good.tar.gz", "w:gz") as tf:
        _add(tf, "PMC9000006/PMC9000006.nxml",
             (FIX / "oai_namespaced.xml").read_bytes().replace(b"PMC9000003", b"PMC9000006"))
        _add(tf, "PMC9000001/copy.nxml", inline)
        _add(tf, "PMC9000007/PMC9000007.nxml", random.Random(7).randbytes(500))
        _add(tf, "PMC9000006/figure.pdf", b"%PDF-1.4 ...")
    # A damaged archive: the first member is intact, the gzip stream is cut inside the second.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        _add(tf, "PMC9000008.xml", (FIX / "nobody.xml").read_bytes().replace(b"PMC9000004", b"PMC9000008"))
        _add(tf, "PMC9000009.xml", b"<article>" + random.Random(9).randbytes(200_000) + b"</article>")
    data = buf.getvalue()
    (pkg / "damaged.tar.gz").write_bytes(data[: len(data) * 2 // 3])
    return {"xml": xml, "pkg": pkg, "good_tar": pkg / "good.tar.gz", "damaged_tar": pkg / "damaged.tar.gz"}
