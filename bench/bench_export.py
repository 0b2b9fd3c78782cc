"""The export stage against the bare `tokenizers` encode of the same documents, and bytes written vs distinct.

    .venv/bin/python bench/bench_export.py [--paragraphs 20000] [--per-article 25] [--format olmo] [--smoke]

A work directory is built from real text (the `<p>` elements of examples/jats and, when present,
../shared/data/pmc-oa-sample, cycled), grouped into synthetic articles with deterministic labels so that
be-all repeats about a third of them 10x. curate writes be-all; then, in this process, on one core
(`RAYON_NUM_THREADS=1`), CPU time (`time.process_time`, every thread of the process):
  1. encode: the subset's distinct article documents (built as the export builds them) through
     `Tokenizer.encode_batch(add_special_tokens=False)`, batches of 1000 = the baseline
  2. export: `pmc-curate export` of the same subset, Beam's in-process runner with one worker: the
     plan (DuckDB), the join, the tokenizing, the shard files, the mixture and the manifest
The issue's targets: export >= 0.8x the bare encode's tokens/s, and bytes written (without
--materialize) = 1.0x the bytes of the distinct documents' tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from bench_shards import load_texts  # noqa: E402

from pipeline.core import labels as L  # noqa: E402
from pipeline.core.records import Article, Label, Paragraph, arrow_schema, as_row  # noqa: E402


def build(root: Path, n: int, per_article: int) -> None:
    texts = load_texts("paragraph")
    paras, labs, arts = [], [], []
    for i in range(n):
        a = f"PMC{i // per_article:07d}"
        pid = f"{a}/sec[0]/p[{i % per_article}]"
        text = texts[i % len(texts)]
        paras.append(Paragraph(id=pid, article_id=a, path=f"sec[0]/p[{i % per_article}]", section_title="Body",
                               text=text, n_tokens=len(text.split()), language="en", language_score=0.9))
        k = i // per_article
        labs.append(Label(id=pid, article_id=a, document_type=L.DOCUMENT_TYPES[0 if k % 3 == 0 and i % 7 == 0 else 1],
                          domain=L.DOMAINS[1], educational_score=3.0 + (i % 3), document_type_scores=[0.25] * 4,
                          domain_scores=[1 / 3] * 3, model_id="bench", truncated=False))
    for k in range((n + per_article - 1) // per_article):
        a = f"PMC{k:07d}"
        arts.append(Article(pmcid=a, pmid=None, doi=None, title=f"Title {k}", journal="J", year=2020,
                            article_type="research-article", license="CC BY", license_url="https://example.org",
                            commercial=True, language="en", n_paragraphs=per_article, source=f"{a}.xml",
                            authors=["A"], article_url=f"https://example.org/{a}"))
    for name, cls, rows in (("articles", Article, arts), ("paragraphs", Paragraph, paras), ("labels", Label, labs)):
        (root / name).mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist([as_row(r) for r in rows], schema=arrow_schema(cls)), root / name / "part-0.parquet")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--paragraphs", type=int, default=20_000)
    ap.add_argument("--per-article", type=int, default=25)
    ap.add_argument("--format", default="olmo")
    ap.add_argument("--smoke", action="store_true", help="500 paragraphs: seconds")
    args = ap.parse_args(argv)
    n = 500 if args.smoke else args.paragraphs
    from pipeline.stages import curate as C
    from pipeline.stages.export import tokenizer as T
    from pipeline.stages.export.plan import article_text
    from pipeline.stages.export.stage import ExportConfig, export

    tmp = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        build(tmp / "w", n, args.per_article)
        C.curate(C.CurateConfig(workdir=str(tmp / "w"), recipe="be-all", threads=1, export=False))
        table = pq.read_table(tmp / "w" / "subsets" / "be-all" / "data").to_pylist()
        docs: dict[str, list] = {}
        for r in table:
            if r["copy"] == 0:
                docs.setdefault(r["pmcid"], []).append((r["section_title"], r["text"]))
        texts = [article_text(p) for p in docs.values()]
        tok, _ = T.load("minilm")
        load0 = os.getloadavg()
        t = time.process_time()
        n_tok = sum(len(e.ids) + 1 for s in range(0, len(texts), 1000)
                    for e in tok.encode_batch(texts[s : s + 1000], add_special_tokens=False))
        encode_s = time.process_time() - t
        t = time.process_time()
        m = export(ExportConfig(workdir=str(tmp / "w"), subset="be-all", tokenizer="minilm", format=args.format),
                   ["--runner=DirectRunner", "--direct_num_workers=1"])
        export_s = time.process_time() - t
        load1 = os.getloadavg()
        assert m["tokens"] == n_tok, (m["tokens"], n_tok)
        out = tmp / "w" / "exports" / "be-all" / args.format
        data = sum(f.stat().st_size for f in out.glob("x*/*") if f.suffix in (".npy", ".bin", ".ds"))
        itemsize = {"uint16": 2, "uint32": 4}[m["dtype"]]
        result = {
            "paragraphs": n, "documents": len(texts), "distinct_tokens": n_tok,
            "tokens_to_train_on": m["mixture"]["total_tokens"],
            "encode_tok_per_cpu_s": round(n_tok / encode_s), "export_tok_per_cpu_s": round(n_tok / export_s),
            "export_vs_encode": round(encode_s / export_s, 3),
            "data_bytes_vs_distinct": round(data / (n_tok * itemsize), 4),
            "all_bytes_vs_distinct": round(m["bytes"] / (n_tok * itemsize), 4),
            "load_average": [round(x, 2) for x in (*load0, *load1)],
        }  # fmt: skip
        print(json.dumps(result))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
