"""Make a larger, realistic PMC-OA corpus from the real sample, for scaling measurements.

    python bench/make_corpus.py --source ../shared/data/pmc-oa-sample --factor 10 --out /tmp/pmc-10x
    python bench/make_corpus.py --factor 100 --out /tmp/pmc-100x --tar-members 1000   # packed like PMC bulk

Copy k of each real article gets new identifiers (PMCID, PMID, DOI: unique across the corpus, so the
parse stage's de-duplication by PMCID keeps every copy) and different text: in every text node inside
`<body>`, a seeded share of adjacent word pairs is swapped, so paragraphs differ (no two copies hash
alike) while lengths, markup, languages and the XML traps of the real files stay as they were. Copy 0
is the original file, byte for byte. The XML is edited as bytes between tags, never re-serialised.
With --tar-members N the files are packed into .tar.gz archives of N members under folders named
like PMC's bulk packages (`oa_comm_xml.PMC000xxxxxx.baseline.tar.gz` with `PMC000xxxxxx/PMCn.xml`).
"""

from __future__ import annotations

import argparse
import io
import itertools
import random
import re
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

# New PMCIDs start far above real ones so a synthetic copy can never collide with a real article.
ID_BASE = 90_000_000

_ARTICLE_ID = re.compile(rb'(<article-id\b[^>]*pub-id-type\s*=\s*["\'](pmc|pmcid|pmid|doi|pmc-uid)["\'][^>]*>)([^<]*)(</article-id>)')
_BODY = re.compile(rb"(<body\b.*?</body>)", re.S)
_TEXT = re.compile(rb">([^<]+)<")
_PMC_IN_NAME = re.compile(r"PMC\d+", re.I)


def _new_ids(new_num: int) -> dict[bytes, bytes]:
    return {
        b"pmc": f"PMC{new_num}".encode(),
        b"pmcid": f"PMC{new_num}".encode(),
        b"pmc-uid": str(new_num).encode(),
        b"pmid": str(new_num).encode(),
        b"doi": f"10.99999/synthetic.{new_num}".encode(),
    }


def _swap_words(text: bytes, rng: random.Random, share: float) -> bytes:
    words = text.split(b" ")
    if len(words) < 4:
        return text
    for i in range(0, len(words) - 1, 2):
        if rng.random() < share:
            words[i], words[i + 1] = words[i + 1], words[i]
    return b" ".join(words)


def vary(xml: bytes, copy: int, new_num: int, share: float = 0.15) -> bytes:
    """Copy `copy` of an article: new identifiers and word-pair swaps in its body text (copy 0: unchanged)."""
    if copy == 0:
        return xml
    ids = _new_ids(new_num)
    xml = _ARTICLE_ID.sub(lambda m: m.group(1) + ids[m.group(2).lower()] + m.group(4), xml)
    rng = random.Random(new_num)

    def body(m: re.Match[bytes]) -> bytes:
        return _TEXT.sub(lambda t: b">" + _swap_words(t.group(1), rng, share) + b"<", m.group(1))

    return _BODY.sub(body, xml, count=1)


def sources(source: Path) -> list[Path]:
    files = sorted(p for p in source.iterdir() if p.suffix.lower() in (".xml", ".nxml"))
    if not files:
        raise SystemExit(f"no .xml/.nxml files in {source}")
    return files


def generate(source: Path, factor: int) -> Iterator[tuple[str, bytes]]:
    """(file name, bytes) of every article of the corpus, `factor` copies of each source file."""
    files = sources(source)
    for copy in range(factor):
        for i, path in enumerate(files):
            new_num = ID_BASE + copy * 100_000 + i
            name = path.name if copy == 0 else _PMC_IN_NAME.sub(f"PMC{new_num}", path.name)
            if name == path.name and copy:
                name = f"PMC{new_num}_{path.name}"
            yield name, vary(path.read_bytes(), copy, new_num)


def write(source: Path, out: Path, factor: int, tar_members: int = 0) -> dict[str, float]:
    """Write the corpus to `out` (plain files, or .tar.gz packages of `tar_members` members)."""
    out.mkdir(parents=True, exist_ok=True)
    n = total = 0
    articles = generate(source, factor)
    if not tar_members:
        for name, data in articles:
            (out / name).write_bytes(data)
            n += 1
            total += len(data)
        return {"files": n, "mb": total / 2**20}
    for pkg, group in enumerate(iter(lambda: list(itertools.islice(articles, tar_members)), [])):
        folder = f"PMC{pkg:03d}xxxxxx"
        with tarfile.open(out / f"oa_comm_xml.{folder}.baseline.tar.gz", "w:gz") as tar:
            for name, data in group:
                info = tarfile.TarInfo(f"{folder}/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                n += 1
                total += len(data)
    return {"files": n, "mb": total / 2**20}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/pmc-oa-sample")
    ap.add_argument("--factor", type=int, default=10, help="copies of each source article (1 = the sample itself)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tar-members", type=int, default=0, help="pack into .tar.gz packages of this many articles")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    s = write(args.source, args.out, args.factor, args.tar_members)
    print(f"{s['files']} articles, {s['mb']:.1f} MB -> {args.out} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
