"""bench/make_corpus.py: the scaling corpus keeps every copy distinct and parseable."""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import make_corpus

from pipeline.jats import parse_article


@pytest.mark.shared_data
def test_copies_get_new_ids_and_different_text(shared_sample: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for p in sorted(shared_sample.glob("*.xml"))[:6]:
        (src / p.name).write_bytes(p.read_bytes())
    docs = list(make_corpus.generate(src, 3))
    assert len(docs) == 18 and len({name for name, _ in docs}) == 18
    originals = {p.name: p.read_bytes() for p in src.iterdir()}
    assert all(docs[i][1] == originals[docs[i][0]] for i in range(6))  # copy 0 is byte for byte
    parsed = [parse_article(data, name) for name, data in docs]
    assert len({r.article.pmcid for r in parsed}) == 18
    i = next(i for i in range(6) if parsed[i].paragraphs)
    texts0 = [p.text for p in parsed[i].paragraphs]
    texts2 = [p.text for p in parsed[i + 12].paragraphs]
    assert len(texts0) == len(texts2) > 0
    assert sum(a != b for a, b in zip(texts0, texts2, strict=True)) >= len(texts0) // 2
    assert sorted(texts0[0].replace(" ", "")) == sorted(texts2[0].replace(" ", ""))  # same words, swapped

    out = tmp_path / "tar"
    stats = make_corpus.write(src, out, 2, tar_members=5)
    archives = sorted(out.glob("*.tar.gz"))
    assert stats["files"] == 12 and len(archives) == 3
    with tarfile.open(archives[0]) as t:
        assert all(m.name.startswith("PMC000xxxxxx/") for m in t.getmembers())
