"""Dedup and decontamination benchmark: per-core throughput of the pure library, MinHash choices, index sizes.

    .venv/bin/python bench/bench_dedup.py --smoke                 # seconds; run by tests/test_dedup_bench.py
    .venv/bin/python bench/bench_dedup.py --paragraphs 1000000    # the figures in docs/dedup.md

Throughput is paragraphs per CPU-second (time.process_time, this process only: on a shared machine it
moves much less than wall time), with wall time and the load average (os.getloadavg) beside it.

1. Corpus: synthetic paragraphs, lognormal length (median 150 words, sigma 0.45, 20..1,000 words),
   words from a 50,000-word Zipf vocabulary, sentences of 12..30 words with capitals and full stops,
   numbers and statistics ("(n = 48)", "p < 0.05"), and non-ASCII tokens (en dash, ±, µg, °C, α-)
   in about half of the paragraphs, as in real PMC text (47% of the sample's paragraphs have one,
   and they take the slower Unicode path of normalisation). Plus the real paragraphs of
   ../shared/data/pmc-oa-sample when present (repeated to a measurable count).
2. exact: `exact_hash` per paragraph. near: `signatures` (normalise, 5-gram hashes, rensa), `band_keys`
   and the 4-bit sketch (`compact`): everything the stage computes per paragraph before its shuffle.
3. MinHash choice, on a subset: the same 5-gram hashes into a vectorised numpy MinHash (a*x+b over
   128 multipliers, min per row), into datasketch (prehashed), and rensa fed Python-built shingle
   strings (what "Python shingling" costs).
4. decontamination: synthetic benchmarks at their real item counts and lengths (MedQA 12.7k items of
   ~116 words; MedMCQA 194k of ~13; PubMedQA 1k labelled and 211k artificial, question ~15 words +
   long answer ~40; MMLU medical 1.9k, a fifth of them long vignettes), the index's size in memory and
   pickled (the side input), and `match_batch` throughput against the corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.dedup.benchmarks import BenchmarkItem  # noqa: E402
from pipeline.dedup.contamination import build_index  # noqa: E402
from pipeline.dedup.exact import exact_hash  # noqa: E402
from pipeline.dedup.lsh import band_keys  # noqa: E402
from pipeline.dedup.minhash import MinHashParams, compact, signatures  # noqa: E402
from pipeline.dedup.ngrams import WordSpans  # noqa: E402
from pipeline.dedup.normalize import normalize_bytes  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadavg import load_line  # noqa: E402

SAMPLE = Path(os.environ.get("PMC_CURATE_SHARED_DATA", REPO.parent / "shared" / "data")) / "pmc-oa-sample"
_SYLLABLE_TEXT = "ba be bi bo bu ka ke ki ko ku la le li lo lu ma me mi mo mu na ne ni no nu ra re ri ro ru sa se si so su ta te ti to tu pha phe thi tro cyt gen ase ine ol"
_SYLLABLES = _SYLLABLE_TEXT.split()
_NON_ASCII = ["–", "±", "µg", "°C", "α-", "β", "’s", "×", "≥", "é"]


class Corpus:
    """Deterministic synthetic paragraphs (see the module docstring)."""

    def __init__(self, seed: int = 0, vocab_size: int = 50_000) -> None:
        rng = np.random.default_rng(seed)
        words: dict[str, None] = {}
        while len(words) < vocab_size:
            picks = rng.integers(0, len(_SYLLABLES), (vocab_size, 4)).tolist()
            for row, n in zip(picks, rng.integers(1, 5, vocab_size).tolist(), strict=True):
                words.setdefault("".join(_SYLLABLES[i] for i in row[:n]))
        self.vocab = np.array(sorted(list(words)[:vocab_size], key=lambda w: (len(w), w)), dtype=object)
        ranks = np.arange(1, vocab_size + 1, dtype=np.float64)
        self.cdf = np.cumsum(ranks**-1.07)
        self.cdf /= self.cdf[-1]
        self.rng = rng

    def words(self, n: int) -> np.ndarray:
        return self.vocab[np.searchsorted(self.cdf, self.rng.random(n))]

    def paragraph_lengths(self, n: int, median: float = 150.0, sigma: float = 0.45, lo: int = 20, hi: int = 1000) -> np.ndarray:
        return np.clip(np.round(self.rng.lognormal(np.log(median), sigma, n)), lo, hi).astype(np.int64)

    def text(self, n_words: int) -> str:
        words = self.words(n_words).tolist()
        rng = self.rng
        for i in rng.integers(0, n_words, max(1, n_words // 40)).tolist():
            words[i] = rng.choice([f"(n = {rng.integers(5, 500)})", f"p < 0.0{rng.integers(1, 6)}", f"{rng.random() * 100:.1f}%", str(rng.integers(1, 2030))])
        if rng.random() < 0.5:
            words[int(rng.integers(0, n_words))] += rng.choice(_NON_ASCII)
        pos = 0
        while pos < n_words:
            words[pos] = words[pos].capitalize()
            pos += int(rng.integers(12, 31))
            words[min(pos, n_words) - 1] += "."
        return " ".join(words)

    def paragraphs(self, n: int, **length: float) -> list[str]:
        return [self.text(int(k)) for k in self.paragraph_lengths(n, **length)]


def real_paragraphs(sample: Path) -> list[str]:
    if not sample.is_dir():
        return []
    from pipeline.jats import parse_articles

    out = []
    for f in sorted(sample.glob("*.xml")):
        for a in parse_articles(f.read_bytes(), f.name, min_tokens=0):
            out += [p.text for p in getattr(a, "paragraphs", [])]
    return out


def measure(name: str, n: int, fn: Callable[[], object], results: dict, **extra: object) -> object:
    load = os.getloadavg()[0]
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    row = {"n": n, "per_cpu_s": n / cpu, "per_wall_s": n / wall, "cpu_s": cpu, "load": load, **extra}
    results[name] = row
    print(f"  {name:<46} {n:>9,} {row['per_cpu_s']:>12,.0f} {row['per_wall_s']:>12,.0f} {load:>6.2f}", flush=True)
    return out


def batched(fn: Callable[[list[str]], object], texts: list[str], batch: int = 512) -> Callable[[], list[object]]:
    return lambda: [fn(texts[i : i + batch]) for i in range(0, len(texts), batch)]


def near(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """What the stage computes per paragraph: band keys and the 4-bit sketch that travels with them."""
    p = MinHashParams()
    sigs, _ = signatures(texts, p)
    return band_keys(sigs, p.bands, p.rows), compact(sigs, p.sketch_bits or 8)


# -- the MinHash alternatives measured for the choice (not used by the library) --------------------
_RNG = np.random.default_rng(12345)
_A = _RNG.integers(1, 2**63, 128, dtype=np.uint64) | np.uint64(1)
_B = _RNG.integers(0, 2**63, 128, dtype=np.uint64)


def numpy_minhash(texts: list[str], chunk: int = 16) -> np.ndarray:
    """Classic MinHash: min over shingles of (a*x + b) mod 2^64, top 32 bits, 128 (a, b) pairs."""
    hashes, offsets = WordSpans.of([normalize_bytes(t) for t in texts]).ngrams(5)
    x = hashes >> np.uint64(32)
    out = np.zeros((len(texts), 128), dtype=np.uint64)
    for lo in range(0, len(texts), chunk):
        hi = min(lo + chunk, len(texts))
        seg = offsets[lo : hi + 1] - offsets[lo]
        v = x[offsets[lo] : offsets[hi], None] * _A[None, :]
        v += _B[None, :]
        rows = np.flatnonzero(np.diff(seg) > 0)
        out[lo + rows] = np.minimum.reduceat(v, seg[rows], axis=0)
    return (out >> np.uint64(32)).astype(np.uint32)


def datasketch_minhash(texts: list[str]) -> list[object]:
    from datasketch import MinHash

    hashes, offsets = WordSpans.of([normalize_bytes(t) for t in texts]).ngrams(5)
    x = (hashes >> np.uint64(32)).tolist()
    out = []
    for i in range(len(texts)):
        m = MinHash(num_perm=128, seed=1, hashfunc=int)
        m.update_batch(x[offsets[i] : offsets[i + 1]])
        out.append(m)
    return out


def rensa_python_shingles(texts: list[str]) -> list[list[int]]:
    import rensa

    shingles = []
    for t in texts:
        w = normalize_bytes(t).split(b" ")
        shingles.append([b" ".join(w[i : i + 5]) for i in range(max(1, len(w) - 4))])
    return rensa.RMinHash.digest_matrix_from_token_byte_sets(shingles, 128, 1).to_rows()


# -- decontamination ------------------------------------------------------------------------------
def benchmark_items(corpus: Corpus, scale: float, artificial: bool) -> dict[str, list[BenchmarkItem]]:
    """Synthetic items at real counts (x scale) and word lengths."""

    def items(name: str, n: int, q_median: float, a_median: float, long_share: float = 0.0, pmid: bool = False) -> list[BenchmarkItem]:
        n = max(1, int(n * scale))
        q_len = corpus.paragraph_lengths(n, median=q_median, sigma=0.35, lo=3, hi=400)
        long = corpus.rng.random(n) < long_share
        q_len[long] = corpus.paragraph_lengths(int(long.sum()), median=120, sigma=0.3, lo=40, hi=400)
        a_len = corpus.paragraph_lengths(n, median=a_median, sigma=0.5, lo=1, hi=200)
        return [BenchmarkItem(name, str(i), corpus.text(int(q)), corpus.text(int(a)), str(10_000_000 + i) if pmid else None)
                for i, (q, a) in enumerate(zip(q_len, a_len, strict=True))]  # fmt: skip

    out = {
        "medqa": items("medqa", 12_723, 116, 3),
        "medmcqa": items("medmcqa", 193_155, 12, 3),
        "pubmedqa-labelled": items("pubmedqa", 1_000, 15, 40, pmid=True),
        "mmlu-medical": items("mmlu", 1_871, 15, 4, long_share=0.2),
    }
    if artificial:
        out["pubmedqa-artificial"] = items("pubmedqa", 211_269, 15, 40, pmid=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paragraphs", type=int, default=1_000_000)
    ap.add_argument("--compare", type=int, default=20_000, help="paragraphs for the MinHash alternatives")
    ap.add_argument("--decontam", type=int, default=200_000, help="paragraphs for decontamination")
    ap.add_argument("--sample", type=Path, default=SAMPLE, help="real JATS articles (skipped when absent)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    print(load_line(), flush=True)
    if args.smoke:
        args.paragraphs, args.compare, args.decontam = 600, 200, 300
    scale = 0.002 if args.smoke else 1.0

    results: dict[str, dict] = {}
    print(f"# bench_dedup  python {platform.python_version()}  cpus {os.cpu_count()}  load {os.getloadavg()}  argv {sys.argv[1:]}")
    corpus = Corpus(vocab_size=5_000 if args.smoke else 50_000)
    t0 = time.perf_counter()
    texts = corpus.paragraphs(args.paragraphs)
    words = np.array([t.count(" ") + 1 for t in texts])
    print(f"# corpus: {len(texts):,} synthetic paragraphs in {time.perf_counter() - t0:.0f} s; words mean {words.mean():.0f}, "
          f"median {np.median(words):.0f}; non-ASCII {np.mean([not t.isascii() for t in texts]):.0%}")  # fmt: skip
    real = real_paragraphs(args.sample)
    if real:
        real = [t for t in real if t.strip()]
        print(f"# real: {len(real):,} paragraphs of {args.sample.name}, mean {np.mean([len(t.split()) for t in real]):.0f} words")
        real = (real * (1 + (args.compare * 2) // len(real)))[: max(len(real), args.compare * 2)]
    print(f"  {'what':<46} {'paragraphs':>9} {'per CPU-s':>12} {'per wall-s':>12} {'load':>6}")

    measure("exact (normalise + BLAKE2b)", len(texts), lambda: [exact_hash(t) for t in texts], results)
    measure("near (5-gram hashes, rensa, band keys, sketch)", len(texts), batched(near, texts), results)
    if real:
        measure("exact, real sample paragraphs", len(real), lambda: [exact_hash(t) for t in real], results)
        measure("near, real sample paragraphs", len(real), batched(near, real), results)

    sub = texts[: args.compare]
    measure("minhash: numpy a*x+b (same 5-gram hashes)", len(sub), batched(numpy_minhash, sub), results)
    measure("minhash: rensa, Python-built shingle strings", len(sub), batched(rensa_python_shingles, sub), results)
    ds = sub[: max(50, len(sub) // 10)]
    measure("minhash: datasketch 2.0 (same 5-gram hashes)", len(ds), batched(datasketch_minhash, ds), results)

    for artificial in (False, True):
        label = "with PubMedQA artificial" if artificial else "eval sets (PubMedQA labelled)"
        per = benchmark_items(corpus, scale, artificial)
        items = [it for group in per.values() for it in group]
        cpu = time.process_time()
        index = build_index(items)
        build_s = time.process_time() - cpu
        pickled = len(pickle.dumps(index, protocol=pickle.HIGHEST_PROTOCOL))
        sizes = {name: build_index(group).keys.size for name, group in per.items()}
        d = index.describe()
        results[f"index {label}"] = {"items": len(items), "entries": d["entries"], "whole_questions": d["whole_questions"],
                                     "entry_bytes": d["entry_bytes"], "pickled_bytes": pickled, "build_cpu_s": build_s,
                                     "entries_per_benchmark": sizes, "question_lengths": len(index.question_lengths)}  # fmt: skip
        print(f"# index {label}: {len(items):,} items, {d['entries']:,} entries ({d['whole_questions']:,} whole questions), "
              f"{d['entry_bytes'] / 2**20:.1f} MiB arrays, {pickled / 2**20:.1f} MiB pickled, built in {build_s:.1f} CPU-s; "
              f"entries {sizes}")  # fmt: skip
        dec = texts[: args.decontam]
        found = measure(f"decontaminate, {label}", len(dec), batched(index.match_batch, dec), results)
        rules: dict[str, int] = {}
        for batch in found:  # type: ignore[union-attr]
            for matches in batch:
                for rule in {m.rule for m in matches}:
                    rules[rule] = rules.get(rule, 0) + 1
        results[f"decontaminate, {label}"]["paragraphs_matched_by_rule"] = rules
        print(f"#   paragraphs matched, by rule: {rules} (synthetic text: chance overlaps of common words only)")
        if real and not artificial:
            measure(f"decontaminate, {label}, real sample", len(real), batched(index.match_batch, real), results)

    p = MinHashParams()
    sketch = p.num_perm * (p.sketch_bits or 32) // 8
    pid = len("PMC10000000/sec[2]/sec[1]/p[3]")
    shuffle = {"signature_bytes": p.num_perm * 4, "sketch_bytes": sketch, "band_key_bytes": 8 * p.bands,
               "paragraph_id_bytes": pid, "band_records_bytes": p.bands * (8 + sketch + pid + 1)}  # fmt: skip
    results["shuffle"] = shuffle
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["peak_rss_mib"] = peak  # type: ignore[assignment]
    print(f"# shuffle per paragraph: {shuffle}; peak RSS {peak:,.0f} MiB; load {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
