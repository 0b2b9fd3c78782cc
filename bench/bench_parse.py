"""Parse-stage speed on one core over the real PMC-OA sample, as ratios against bare lxml in the same run.

    .venv/bin/python bench/bench_parse.py [--sample ../shared/data/pmc-oa-sample] [--rounds 5] [--cpu 0] [--clock wall|cpu]

Measures, over the same files:
  1. bare lxml parse of the bytes held in memory (the project's hardened parser options, no
     extraction)                                                                 = the baseline
  2. pubmed_parser.parse_pubmed_paragraph(path, all_paragraph=True): reads the file itself (libxml2
     from the path, page cache), parses all of it with lxml's default parser, paragraphs + section
     titles + article meta (stdout redirected to a StringIO: it prints on errors)
  3. our extraction alone, bytes in memory: XML -> paragraphs + paths + metadata + license
     (pipeline.jats.extract_articles)
  4. the same, reading the file itself first (Path.read_bytes, page cache): what pubmed_parser does
  5. the complete stage function: 3 + MiniLM token counts + language ID (pipeline.jats.parse_articles)
Best of N interleaved rounds per method (the least disturbed by other processes on a shared machine).
--clock cpu times with time.process_time (this process's CPU time, user + system) instead of
wall time: on a loaded machine the pinned core is shared, and CPU time leaves out the waits.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadavg import load_line

# One core: no tokenizer thread pool, no BLAS threads. Must be set before the libraries load.
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PMC_OA_ARTICLES = 4_500_000  # FACTS.md section 1: the PMC Open Access Subset, ~4.5M full-text articles


CLOCK = time.perf_counter


def best_time(fn, items, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = CLOCK()
        for it in items:
            fn(it)
        best = min(best, CLOCK() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", default=str(REPO.parent / "shared" / "data" / "pmc-oa-sample"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cpu", type=int, default=0, help="pin the process to this core")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: time.perf_counter; cpu: time.process_time (less disturbed by other load)")
    args = ap.parse_args(argv)
    print(load_line(), flush=True)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})

    from lxml import etree

    from pipeline.jats import extract_articles, parse_articles
    from pipeline.jats.xml import _PARSER_OPTIONS

    files = sorted(p for p in Path(args.sample).iterdir() if p.suffix in (".xml", ".nxml"))
    docs = [(str(p), p.read_bytes()) for p in files]
    total = sum(len(d) for _, d in docs)
    mb = total / 1e6
    load = " load average {:.2f} {:.2f} {:.2f};".format(*os.getloadavg()) if hasattr(os, "getloadavg") else ""
    print(f"sample: {len(docs)} files, {mb:.2f} MB ({total / len(docs) / 1e3:.1f} kB/article); "
          f"best of {args.rounds} rounds, {args.clock} clock; pinned to CPU {args.cpu};{load} lxml {etree.__version__}")

    bare_parser = etree.XMLParser(**_PARSER_OPTIONS)
    parse_articles(b"<article><body><p>warm up</p></body></article>", "PMC1.xml", min_tokens=0)  # load models

    def bare(d):
        etree.fromstring(d[1], bare_parser)

    def extraction(d):
        extract_articles(d[1], d[0])

    def extraction_from_file(d):
        extract_articles(Path(d[0]).read_bytes(), d[0])

    def complete(d):
        parse_articles(d[1], d[0])

    ours = "our extraction (XML -> paragraphs, meta, license)"
    ours_file = "our extraction, reading the file itself (as pubmed_parser does)"
    methods = [("bare lxml parse (baseline)", bare), (ours, extraction), (ours_file, extraction_from_file),
               ("complete stage fn (+ tokens + language)", complete)]
    try:
        import pubmed_parser

        def pmp(d):
            with contextlib.redirect_stdout(io.StringIO()):
                pubmed_parser.parse_pubmed_paragraph(d[0], all_paragraph=True)

        pmp_name = "pubmed_parser.parse_pubmed_paragraph (reads the file)"
        methods.insert(1, (pmp_name, pmp))
    except ImportError:
        pmp_name = None
        print("pubmed_parser not installed: skipped")

    # Rounds interleave the methods, so a burst of load from other processes hits all of them alike.
    results = {name: float("inf") for name, _ in methods}
    for _ in range(args.rounds):
        for name, fn in methods:
            results[name] = min(results[name], best_time(fn, docs, 1))
    # Where the complete stage spends its time: the two per-paragraph steps alone, on the same texts
    # (a batch per article, as the stage does), converted to MB/s of the XML they came from.
    from pipeline.jats.lang import detect_languages
    from pipeline.jats.tokens import count_tokens, count_tokens_reference

    per_article = [[p.text for ex in extract_articles(d[1], d[0]) for p in getattr(ex, "paragraphs", [])] for d in docs]
    steps = [("  of which: token counts, fast path", count_tokens),
             ("  token counts, plain tokenizer (for comparison)", count_tokens_reference),
             ("  of which: language ID (CLD2 + fastText fallback)", detect_languages)]
    for name, fn in steps:
        results[name] = min(best_time(fn, per_article, 1) for _ in range(args.rounds))

    base = results[methods[0][0]]
    t_pmp = results.get(pmp_name)
    print("\n| what | files/s | MB/s | x bare lxml | x pubmed_parser |\n|---|---|---|---|---|")
    for name, t in results.items():
        vs_pmp = f"{t_pmp / t:.2f}" if t_pmp and not name.startswith(" ") else "-"
        print(f"| {name} | {len(docs) / t:,.0f} | {mb / t:.1f} | {base / t:.2f} | {vs_pmp} |")
    if t_pmp:
        print(f"\nour extraction vs pubmed_parser: {t_pmp / results[ours]:.3f}x (bytes in memory), "
              f"{t_pmp / results[ours_file]:.3f}x (both reading the file)")

    t_complete = results["complete stage fn (+ tokens + language)"]
    full_gb = PMC_OA_ARTICLES * total / len(docs) / 1e9
    core_h = full_gb * 1e3 / (mb / t_complete) / 3600
    print(f"\nFull PMC-OA estimate: {PMC_OA_ARTICLES:,} articles x {total / len(docs) / 1e3:.1f} kB (sample mean) "
          f"= {full_gb:,.0f} GB of XML; at {mb / t_complete:.1f} MB/s per core for the complete stage "
          f"= {core_h:,.0f} core-hours ({core_h / 64:.1f} h on 64 cores).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
