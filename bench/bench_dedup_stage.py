"""The dedup and decontaminate Beam stages end to end on a synthetic work directory (DirectRunner, in process).

    PYTHONPATH=. .venv/bin/python bench/bench_dedup_stage.py --paragraphs 20000     # docs/benchmarks.md
    PYTHONPATH=. .venv/bin/python bench/bench_dedup_stage.py --smoke                # seconds

The corpus is bench_dedup's (synthetic paragraphs, 20 per article) plus 5% edited copies (one word
changed) in other articles, so the near-duplicate steps have groups to rank. The benchmarks are
bench_dedup's synthetic evaluation sets at `--bench-scale` of their real counts, written as JSONL in
the medqa field layout (`LABEL:medqa=FILE`). Rates are paragraphs per CPU-second of this process
(the in-process runner runs every step here) and per wall-second, with the load average
(os.getloadavg) and the peak RSS: the whole stage (read, features, shuffles, components, ranking,
write), against the library-only rates of bench_dedup.py.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dedup import Corpus, benchmark_items

from pipeline.core.records import Article, Paragraph, arrow_schema, as_row
from pipeline.core.workdir import Workdir
from pipeline.stages.decontaminate import DecontaminateConfig, run_decontaminate
from pipeline.stages.dedup.config import DedupConfig
from pipeline.stages.dedup.stage import run_dedup


def make_workdir(root: Path, n: int, seed: int = 0) -> Workdir:
    corpus = Corpus(seed)
    texts = corpus.paragraphs(n)
    copies = max(1, n // 20)
    for i in range(copies):  # an edited copy of an earlier paragraph: one word replaced
        words = texts[i * 7 % n].split()
        words[len(words) // 2] = "edited"
        texts.append(" ".join(words))
    paras, arts = [], []
    for i, text in enumerate(texts):
        pmcid = f"PMC{1_000_000 + i // 20}"
        if i % 20 == 0:
            arts.append(Article(pmcid=pmcid, pmid=None, doi=None, title=None, journal=None, year=2020, article_type=None,
                                license="CC BY", license_url=None, commercial=True, language="en", n_paragraphs=20,
                                source="bench", version=1))  # fmt: skip
        path = f"sec[0]/p[{i % 20}]"
        paras.append(Paragraph(id=f"{pmcid}/{path}", article_id=pmcid, path=path, section_title=None, text=text,
                               n_tokens=len(text.split()), language="en"))  # fmt: skip
    wd = Workdir.of(root)
    for name, rows, cls in (("articles", arts, Article), ("paragraphs", paras, Paragraph)):
        pq.write_table(pa.Table.from_pylist([as_row(r) for r in rows], schema=arrow_schema(cls)),
                       wd.reset_table(name) / "part-0.parquet")  # fmt: skip
    return wd


def timed(name: str, n: int, fn: object) -> dict[str, object]:
    load = os.getloadavg()[0]
    c0, w0 = time.process_time(), time.perf_counter()
    summary = fn()  # type: ignore[operator]
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    row = {"stage": name, "paragraphs": n, "per_cpu_s": round(n / cpu), "per_wall_s": round(n / wall),
           "cpu_s": round(cpu, 1), "wall_s": round(wall, 1), "load": round(load, 1)}  # fmt: skip
    print(json.dumps(row), flush=True)
    return {**row, "summary": summary}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paragraphs", type=int, default=20_000)
    ap.add_argument("--bench-scale", type=float, default=0.05)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    n, scale = (400, 0.002) if args.smoke else (args.paragraphs, args.bench_scale)
    with tempfile.TemporaryDirectory(prefix="bench-dedup-stage-") as tmp:
        wd = make_workdir(Path(tmp) / "w", n)
        total = n + max(1, n // 20)
        specs = []
        for label, items in benchmark_items(Corpus(1), scale, artificial=False).items():
            f = Path(tmp) / f"{label}.jsonl"
            f.write_text("".join(json.dumps({"question": it.question, "answer": it.answer or "-"}) + "\n" for it in items))
            specs.append(f"{label}:medqa={f}")
        d = timed("dedup", total, lambda: run_dedup(wd, DedupConfig(workdir=str(wd.root)), []))
        c = timed("decontaminate", total, lambda: run_decontaminate(wd, DecontaminateConfig(workdir=str(wd.root), benchmarks=specs), []))
    print(json.dumps({"near_copies": d["summary"]["near_copies"], "near_groups": d["summary"]["near_groups"],
                      "contaminated": c["summary"]["contaminated_paragraphs"],
                      "index_entries": c["summary"]["index"]["entries"],
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
