"""Curate benchmark: every built-in recipe over a synthetic labelled corpus, DuckDB vs Polars lazy.

    .venv/bin/python bench/bench_curate.py [--paragraphs 2000000] [--threads 2] [--out /tmp/bench-curate]

1. Generates W/articles, W/paragraphs, W/labels with the project's record schemas: lognormal
   paragraph lengths (median ~120 words), ~30 paragraphs per article, label mixes near the paper's
   (types and domains mixed within articles; ~1.6% clinical-case paragraphs, ~0.5% French articles).
   Words are drawn from the MiniLM vocabulary and are each exactly one WordPiece token, so n_tokens
   (= word count) is the true MiniLM count and curate can reuse it, as it does with real parse output.
2. For each recipe, in its own subprocess (peak RSS read per child with os.wait4):
   - `duckdb-full`: `pmc-curate curate` as a user runs it (Parquet + JSONL export + manifest + card);
   - `duckdb`: the same with --no-export (the subset Parquet, manifest and card);
   - `polars`: the same recipe with Polars' lazy API and streaming sink to Parquet (same rows, same
     order, same copies), the baseline for `duckdb`.
Both engines get the same number of threads; DuckDB gets --memory-limit 2GB and spills beyond.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.core import labels as L  # noqa: E402
from pipeline.core.records import Article, Label, Paragraph, arrow_schema  # noqa: E402
from pipeline.stages.curate import builtin_recipes  # noqa: E402

TITLES = np.array(["Introduction", "Background", "Methods", "Methods > Patients", "Methods > Statistical analysis",
                   "Results", "Results > Outcomes", "Case presentation", "Discussion", "Conclusions"])  # fmt: skip
LICENSES = [("CC BY", True), ("CC0", True), ("CC BY-NC", False), ("CC BY-NC-ND", False), ("other", False)]


def _one_token_words() -> list[str]:
    """Whole words of MiniLM's vocabulary that tokenize to exactly one token, plus '.' and ','."""
    from pipeline.stages.curate import load_tokenizer

    tok = load_tokenizer()
    vocab = [w for w in tok.get_vocab() if w.isalpha() and w.isascii() and 3 <= len(w) <= 12]
    vocab.sort()
    enc = tok.encode_batch(vocab, add_special_tokens=False)
    return [w for w, e in zip(vocab, enc, strict=True) if len(e.ids) == 1][:8000]


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The table in the record's schema, the columns it does not generate null: a field added to a record
    later (a column parse gained) does not break the generator."""
    cols = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
            for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)


def generate(root: Path, n_paragraphs: int, seed: int = 0) -> dict[str, float]:
    """Write a synthetic labelled corpus of about n_paragraphs paragraphs under root."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    words = _one_token_words()
    # Zipf-ish word frequencies; '.' and ',' are words of their own (one token each).
    vocab = np.array(words + [".", ","])
    weights = 1.0 / np.arange(1, len(vocab) + 1) ** 0.8
    weights[-2:] = weights[:2].sum()
    weights /= weights.sum()
    pool_words = rng.choice(len(vocab), size=6_000_000, p=weights)
    pieces = vocab[pool_words]
    pool = " ".join(pieces.tolist()).encode()
    lens = np.char.str_len(pieces.astype(str)) + 1
    word_start = np.r_[0, np.cumsum(lens)[:-1]]

    # Articles: lognormal paragraph counts (median ~25, long tail), until n_paragraphs is reached.
    n_art_est = int(n_paragraphs / 30 * 1.3) + 10
    per_article = np.clip(rng.lognormal(np.log(25), 0.6, n_art_est).astype(np.int64), 3, 300)
    cum = np.cumsum(per_article)
    n_art = int(np.searchsorted(cum, n_paragraphs)) + 1
    per_article = per_article[:n_art]
    per_article[-1] -= int(per_article.sum() - n_paragraphs)
    per_article = per_article[per_article > 0]
    n_art = len(per_article)
    n = int(per_article.sum())
    art_of = np.repeat(np.arange(n_art), per_article)
    j = np.arange(n) - np.repeat(np.cumsum(per_article) - per_article, per_article)

    # Article kinds: 3% case reports, 10% reviews, 77% studies, 10% other; domains 15/75/10; 0.5% French.
    kind = rng.choice(4, n_art, p=[0.03, 0.77, 0.10, 0.10])  # index into DOCUMENT_TYPES
    adomain = rng.choice(3, n_art, p=[0.15, 0.75, 0.10])
    french = rng.random(n_art) < 0.005
    lic = rng.choice(len(LICENSES), n_art, p=[0.55, 0.05, 0.25, 0.10, 0.05])
    year = rng.integers(2000, 2026, n_art)

    # Paragraph labels: the article's kind/domain most of the time, so most articles mix types/domains.
    k = kind[art_of]
    stay = rng.random(n) < np.where(k == 0, 0.6, 0.7)
    other_type = rng.choice([1, 2, 3], n)  # never a clinical case by mixing ...
    ptype = np.where(stay, k, other_type)
    ptype[(k != 0) & (rng.random(n) < 0.0005)] = 0  # ... except rarely (a case vignette inside a study)
    pdomain = np.where(rng.random(n) < 0.75, adomain[art_of], rng.choice(3, n))
    score = np.clip(rng.normal(3.5, 0.9, n), 1, 5).round(2)
    plang = np.where(french[art_of] & (rng.random(n) < 0.5), "fr", "en")

    # Text: slices of the word pool, lognormal word counts (median 120).
    n_words = np.clip(rng.lognormal(np.log(120), 0.5, n).astype(np.int64), 20, 1500)
    starts = rng.integers(0, len(pool_words) - 1600, n)
    a = word_start[starts]
    b = word_start[starts + n_words] - 1
    text = pa.array([pool[x:y] for x, y in zip(a.tolist(), b.tolist(), strict=True)], pa.binary()).cast(pa.string())

    pmcid = np.char.add("PMC", (1_000_000 + np.arange(n_art)).astype(str))
    sec, p = j // 12, j % 12  # up to p[11]: numeric, not string, order matters
    path = np.char.add(np.char.add(np.char.add("sec[", sec.astype(str)), "]/p["), np.char.add(p.astype(str), "]"))
    aid = pmcid[art_of]
    pid = np.char.add(np.char.add(aid, "/"), path)
    order = rng.permutation(n)  # rows in random order: the recipe must restore document order

    dt = (root / "paragraphs", root / "articles", root / "labels")
    for d in dt:
        d.mkdir(parents=True, exist_ok=True)
    meta = {"tokenizer": "sentence-transformers/all-MiniLM-L6-v2 WordPiece, no special tokens (synthetic: 1 word = 1 token)"}
    paragraphs = pa.table({
        "id": pid, "article_id": aid, "path": path, "section_title": TITLES[np.minimum(sec, len(TITLES) - 1)],
        "text": text, "n_tokens": n_words, "language": plang, "language_score": np.full(n, 0.95),
    }).take(pa.array(order))  # fmt: skip
    paragraphs = conform(paragraphs, arrow_schema(Paragraph, meta))
    for i in range(4):
        pq.write_table(paragraphs.slice(i * n // 4, (i + 1) * n // 4 - i * n // 4), dt[0] / f"part-{i}.parquet",
                       compression="zstd")  # fmt: skip
    probs_t = rng.dirichlet(np.ones(4), n).round(3)
    probs_d = rng.dirichlet(np.ones(3), n).round(3)
    labels = pa.table({
        "id": pid, "article_id": aid, "document_type": np.array(L.DOCUMENT_TYPES)[ptype],
        "domain": np.array(L.DOMAINS)[pdomain], "educational_score": score,
        "document_type_scores": pa.FixedSizeListArray.from_arrays(probs_t.ravel(), 4).cast(pa.list_(pa.float64())),
        "domain_scores": pa.FixedSizeListArray.from_arrays(probs_d.ravel(), 3).cast(pa.list_(pa.float64())),
        "model_id": np.full(n, "synthetic"), "truncated": np.zeros(n, bool), "input_hash": pa.nulls(n, pa.string()),
    }).take(pa.array(order))  # fmt: skip
    labels = conform(labels, arrow_schema(Label))
    pq.write_table(labels, dt[2] / "part-0.parquet", compression="zstd")
    lic_names = np.array([x[0] for x in LICENSES])
    lic_com = np.array([x[1] for x in LICENSES])
    authors = pa.array([["A. Author", "B. Author"]] * n_art, pa.list_(pa.string()))
    articles = pa.table({
        "pmcid": pmcid, "pmid": pa.nulls(n_art, pa.string()), "doi": pa.nulls(n_art, pa.string()),
        "title": np.char.add("Synthetic article ", np.arange(n_art).astype(str)), "journal": np.full(n_art, "J Synth"),
        "year": year, "article_type": np.array(["case-report", "research-article", "review-article", "other"])[kind],
        "license": lic_names[lic], "license_url": np.char.add("https://creativecommons.org/", lic_names[lic]),
        "commercial": lic_com[lic], "language": np.full(n_art, "en"), "n_paragraphs": per_article,
        "source": np.char.add(pmcid, ".xml"), "authors": authors,
        "article_url": np.char.add("https://pmc.ncbi.nlm.nih.gov/articles/", pmcid),
        "n_short_paragraphs": np.zeros(n_art, np.int64), "n_sub_articles": np.zeros(n_art, np.int64),
    })  # fmt: skip
    articles = conform(articles, arrow_schema(Article))
    pq.write_table(articles, dt[1] / "part-0.parquet", compression="zstd")
    return {"paragraphs": n, "articles": n_art, "words_median": float(np.median(n_words)),
            "text_gb": round(pc.sum(pc.binary_length(text)).as_py() / 1e9, 2),
            "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip


# ---- Polars versions of the built-in recipes (same parameters as the .sql defaults) -----------

POLARS_SCRIPT = r'''
import sys, polars as pl
from pipeline.core import labels as L
W, recipe, out = sys.argv[1], sys.argv[2], sys.argv[3]
CC, CLIN = L.DOCUMENT_TYPES[0], L.DOMAINS[0]
art = pl.scan_parquet(f"{W}/articles/*.parquet")
par = pl.scan_parquet(f"{W}/paragraphs/*.parquet")
lab = pl.scan_parquet(f"{W}/labels/*.parquet").select("id", "document_type", "domain", "educational_score",
                                                       "domain_scores", "document_type_scores")
corpus = par.join(lab, on="id").join(
    art.select(pl.col("pmcid").alias("article_id"), "authors", "article_url", "license_url", "license",
               "commercial", "year", "title", "journal"), on="article_id")
flags = corpus.group_by("article_id").agg(
    clinical_share=(pl.col("domain") == CLIN).cast(pl.Float64).mean(),
    n_cases=(pl.col("document_type") == CC).sum(),
    n_lang=(pl.col("language") == "fr").sum(),
)
c = corpus.join(flags, on="article_id")
one = pl.lit(1, pl.Int64)
if recipe == "be-base":
    sel = c.with_columns(repeat=one)
elif recipe == "be-educational":
    sel = c.filter(pl.col("educational_score") >= 3.0).with_columns(repeat=one)
elif recipe == "be-clinical":
    sel = c.with_columns(repeat=pl.when(pl.col("clinical_share") > 0.5).then(10).otherwise(1))
elif recipe == "be-clinicalcase":
    sel = c.with_columns(repeat=pl.when(pl.col("n_cases") >= 1).then(10).otherwise(1))
elif recipe == "be-french":
    sel = c.with_columns(repeat=pl.when(pl.col("n_lang") >= 1).then(10).otherwise(1))
elif recipe == "be-all":
    sel = c.filter(pl.col("educational_score") >= 3.0).with_columns(
        repeat=pl.max_horizontal(one, pl.when(pl.col("clinical_share") > 0.5).then(10).otherwise(1),
                                 pl.when(pl.col("n_cases") >= 1).then(10).otherwise(1),
                                 pl.when(pl.col("n_lang") >= 1).then(10).otherwise(1)),
        prefix=pl.format("<type: {} | domain: {} | educational score: {}>\n", "document_type", "domain",
                         pl.col("educational_score").round(0).cast(pl.Int64)))
elif recipe == "encoder":
    sel = c.filter(pl.col("educational_score") >= 3.0).with_columns(
        repeat=pl.when(pl.col("n_cases") >= 1).then(100).when(pl.col("clinical_share") > 0.5).then(10).otherwise(1))
if "prefix" not in sel.collect_schema().names():
    sel = sel.with_columns(prefix=pl.lit(None, pl.String))
key = pl.col("path").str.extract_all(r"\d+").list.eval(pl.element().str.zfill(6)).list.join("/")
res = (sel.with_columns(text=pl.concat_str([pl.col("prefix").fill_null(""), pl.col("text")]), _key=key,
                        copy=pl.int_ranges(0, "repeat"))
       .explode("copy")
       .sort(["article_id", "copy", "_key", "path"])
       .select(pl.col("id").alias("paragraph_id"), pl.col("article_id").alias("pmcid"), "path", "text", "language",
               "section_title", "domain", "document_type", "educational_score", pl.col("domain_scores").alias("domain_probs"),
               pl.col("document_type_scores").alias("type_probs"), "language_score", "authors",
               "article_url", "license_url", "copy", "prefix", "n_tokens", "license", "commercial", "year",
               "title", "journal"))
res.sink_parquet(out, compression="zstd")
n = pl.scan_parquet(out).select(pl.len()).collect().item()
print(n)
'''


def _measure(cmd: list[str], env: dict[str, str]) -> dict[str, float | int | str]:
    """Run cmd; wall time, peak RSS of that child (os.wait4), return code and output tail."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO)
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"seconds": round(time.perf_counter() - t0, 1), "peak_rss_gb": round(usage.ru_maxrss / 2**20, 2),
            "rc": proc.returncode, "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "tail": out[-400:]}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paragraphs", type=int, default=2_000_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-curate"))
    ap.add_argument("--recipes", nargs="*", default=builtin_recipes())
    ap.add_argument("--engines", nargs="*", default=["duckdb-full", "duckdb", "polars"])
    ap.add_argument("--reuse", action="store_true", help="reuse the corpus already generated in --out")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    wd = args.out / "w"
    if args.generate_only:
        print(json.dumps(generate(wd, args.paragraphs)))
        return 0
    if not (args.reuse and (wd / "labels").is_dir()):
        shutil.rmtree(args.out, ignore_errors=True)
        print("generating ...", flush=True)
        # In a child process: a forked child's peak RSS would otherwise include this process's memory.
        gen = subprocess.run([sys.executable, __file__, "--generate-only", "--paragraphs", str(args.paragraphs),
                              "--out", str(args.out)], check=True, capture_output=True, text=True)  # fmt: skip
        info = json.loads(gen.stdout.strip().splitlines()[-1])
    else:
        info = {"paragraphs": pq.ParquetDataset(wd / "paragraphs").read(columns=["id"]).num_rows}
    print(json.dumps(info), flush=True)
    env = dict(os.environ, POLARS_MAX_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads),
               HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")  # fmt: skip
    py = sys.executable
    results = []
    for recipe in args.recipes:
        for engine in args.engines:
            if engine == "polars":
                out = args.out / f"polars-{recipe}.parquet"
                cmd = [py, "-c", POLARS_SCRIPT, str(wd), recipe, str(out)]
            else:
                cmd = [py, "-m", "pipeline.cli", "curate", "--workdir", str(wd), "--recipe", recipe,
                       "--threads", str(args.threads), "--memory-limit", "2GB", "--name", f"{recipe}-{engine}"]  # fmt: skip
                if engine == "duckdb":
                    cmd.append("--no-export")
            r = _measure(cmd, env)
            rows = None
            if r["rc"] == 0 and engine == "polars":
                rows = int(r["tail"].strip().splitlines()[-1])
            elif r["rc"] == 0:
                m = json.loads((wd / "subsets" / f"{recipe}-{engine}" / "manifest.json").read_text())
                rows = m["stats"]["rows"]
                r["timings"] = m["timings"]
            r.update(recipe=recipe, engine=engine, rows=rows)
            if r["rc"] == 0:
                r.pop("tail")
            print(json.dumps(r), flush=True)
            results.append(r)
            shutil.rmtree(wd / "subsets" / f"{recipe}-{engine}", ignore_errors=True)
            (args.out / f"polars-{recipe}.parquet").unlink(missing_ok=True)

    # Summary table (Markdown) for docs/benchmarks.md.
    by = {(r["recipe"], r["engine"]): r for r in results}
    print("\nwall s / CPU s / peak RSS GB per run; ratios: Polars / DuckDB subset (wall, CPU)")
    print("\n| recipe | rows out | DuckDB full | DuckDB subset | Polars lazy | Polars / DuckDB wall | CPU |")
    print("|---|---|---|---|---|---|---|")
    for recipe in args.recipes:
        cells = []
        for engine in ("duckdb-full", "duckdb", "polars"):
            r = by.get((recipe, engine))
            cells.append("-" if r is None else (f"{r['seconds']} / {r['cpu_s']} / {r['peak_rss_gb']}" if r["rc"] == 0
                                               else f"failed rc={r['rc']}"))  # fmt: skip
        d, p = by.get((recipe, "duckdb")), by.get((recipe, "polars"))
        ok = d and p and d["rc"] == 0 and p["rc"] == 0
        ratio = f"{p['seconds'] / d['seconds']:.2f}x | {p['cpu_s'] / d['cpu_s']:.2f}x" if ok else "- | -"
        rows = next((by[(recipe, e)]["rows"] for e in args.engines if (recipe, e) in by), "-")
        print(f"| {recipe} | {rows:,} | " + " | ".join(cells) + f" | {ratio} |")
    load = os.getloadavg()
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load avg {load[0]:.1f} "
          f"(shared), threads={args.threads}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"corpus": info, "results": results, "loadavg": load}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
