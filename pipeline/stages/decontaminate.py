"""`pmc-curate decontaminate`: which paragraphs overlap which benchmark items, and by which rule.

    pmc-curate decontaminate --workdir W --benchmark medqa=test.jsonl --benchmark pubmedqa=ori_pqal.json [Beam flags]

`--benchmark NAME=FILE` names a local benchmark file (JSONL, JSON or Parquet; the project fetches
nothing). NAME is a format (medqa, medmcqa, medmcqa-original, mmlu, pubmedqa), a format followed by
`-anything` (`mmlu-anatomy`, read as mmlu), or `LABEL:FORMAT`. The fields each format reads are in
pipeline.dedup.benchmarks; a record without them stops the run with an error naming the field.

    benchmark files -> ContaminationIndex (driver) -> side input
    W/paragraphs -> batches -> index.hits: (n-gram key, paragraph) for the rare paragraphs that hit
      -> group by key: keys in more than --max-corpus-df paragraphs are the corpus's own boilerplate, ignored
      -> group by paragraph -> index.matches -> rows (rule ngram or question)
    W/articles with a PubMedQA PMID (side input) -> every paragraph of the article -> rows (rule pmid)
    -> W/contamination/*.parquet (pipeline.core.records.Contamination)

Nothing is deleted; `curate --param decontaminate=true` drops the matched paragraphs and reports how many,
per benchmark. See docs/dedup.md.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.io.parquetio import ReadFromParquet, WriteToParquet

from beam_runners.options import make_pipeline
from pipeline.core import storage, tables
from pipeline.core.errors import ConfigError
from pipeline.core.options import option
from pipeline.core.records import Contamination, arrow_schema, as_row
from pipeline.core.workdir import Workdir
from pipeline.dedup.benchmarks import FORMATS, BenchmarkItem, get_format, read_benchmark
from pipeline.dedup.contamination import ContaminationIndex, DecontamParams, Match, build_index

log = logging.getLogger(__name__)

STAGE = "decontaminate"
_P = DecontamParams()


@dataclass(frozen=True)
class DecontaminateConfig:
    """Settings of one decontamination run."""

    workdir: str = option("", fixed=True, help="work directory with paragraphs/ and articles/")
    benchmarks: list[str] = option(default_factory=list, flag="--benchmark", append=True, metavar="NAME=FILE",
                                   input_path=True,
                                   help="a benchmark file (repeatable); NAME is its format (medqa, medmcqa, "
                                        "medmcqa-original, mmlu, pubmedqa), FORMAT-anything, or LABEL:FORMAT")
    ngram_words: int = option(_P.ngram_words, help="words per n-gram of question + answer")
    min_question_words: int = option(_P.min_question_words,
                                     help="questions shorter than --ngram-words match whole from this many words")
    max_corpus_df: int = option(_P.max_corpus_df,
                                help="an n-gram in more paragraphs of the corpus than this is ignored (boilerplate)")
    digits_to_zero: bool = option(False, help="normalise every number to 0 before matching")
    batch_size: int = option(512, speed_only=True, help="paragraphs per lookup batch")

    def params(self) -> DecontamParams:
        return DecontamParams(ngram_words=self.ngram_words, min_question_words=self.min_question_words,
                              max_corpus_df=self.max_corpus_df, digits_to_zero=self.digits_to_zero)  # fmt: skip


Config = DecontaminateConfig


def parse_spec(spec: str) -> tuple[str, str, str]:
    """`NAME=FILE` -> (label, format, file); ConfigError naming the known formats otherwise."""
    name, sep, path = spec.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise ConfigError(f"--benchmark {spec!r}: expected NAME=FILE, e.g. medqa=medqa_test.jsonl")
    name, path = name.strip(), path.strip()
    if ":" in name:
        label, fmt = name.split(":", 1)
        return label, get_format(fmt).name, path
    if name.lower() in FORMATS:
        return name, name.lower(), path
    prefix = next((f for f in sorted(FORMATS, key=len, reverse=True) if name.lower().startswith(f + "-")), None)
    if prefix is None:
        raise ConfigError(f"--benchmark {spec!r}: {name!r} names no format; known formats: {', '.join(sorted(FORMATS))} "
                          "(or use LABEL:FORMAT=FILE)")  # fmt: skip
    return name, prefix, path


def load_items(specs: list[str]) -> list[BenchmarkItem]:
    """Every item of every --benchmark file, each benchmark named by its label."""
    if not specs:
        raise ConfigError("decontaminate needs at least one --benchmark NAME=FILE")
    items: list[BenchmarkItem] = []
    labels: set[str] = set()
    for spec in specs:
        label, fmt, path = parse_spec(spec)
        if label in labels:
            raise ConfigError(f"--benchmark {label} given twice; name each file differently (LABEL:FORMAT=FILE)")
        labels.add(label)
        items += read_benchmark(path, fmt, name=label)
    return items


def _row(pid: str, article_id: str, m: Match) -> dict[str, Any]:
    return as_row(Contamination(id=pid, article_id=article_id, benchmark=m.benchmark, item_id=m.item_id,
                                rule=m.rule, n_ngrams=m.n_ngrams))  # fmt: skip


class Hits(beam.DoFn):
    """A batch of paragraphs -> (index key, (id, article_id)) for every distinct key a paragraph contains."""

    def process(self, batch: list[dict[str, Any]], index: ContaminationIndex) -> Iterator[tuple[int, tuple[str, str]]]:
        found = index.hits([p.get("text") or "" for p in batch])
        for p, keys in zip(batch, found, strict=True):
            for k in keys.tolist():
                yield k, (p["id"], p["article_id"])


def _rare(kv: tuple[int, Iterable[tuple[str, str]]], max_df: int) -> Iterator[tuple[str, tuple[str, int]]]:
    members = set(kv[1])
    if len(members) <= max_df:
        for pid, article_id in members:
            yield pid, (article_id, kv[0])


def _matches(kv: tuple[str, Iterable[tuple[str, int]]], index: ContaminationIndex) -> Iterator[dict[str, Any]]:
    pid, hits = kv
    hits = list(hits)
    keys = np.array(sorted({k for _, k in hits}), dtype=np.uint64)
    for m in index.matches(keys):
        yield _row(pid, hits[0][0], m)


def _pmid_matches(p: dict[str, Any], pmids: dict[str, str], index: ContaminationIndex) -> Iterator[dict[str, Any]]:
    pmid = pmids.get(p["article_id"])
    if pmid:
        for m in index.pmid_matches(pmid):
            yield _row(p["id"], p["article_id"], m)


def build(p: beam.Pipeline, workdir: Workdir, config: DecontaminateConfig, index: ContaminationIndex) -> None:
    """The stage's graph on pipeline `p`."""
    side = beam.pvalue.AsSingleton(p | "Index" >> beam.Create([index]))
    paragraphs = p | "ReadParagraphs" >> ReadFromParquet(workdir.glob("paragraphs"), columns=["id", "article_id", "text"])
    text_rows = (paragraphs | "Batch" >> beam.BatchElements(min_batch_size=min(64, config.batch_size),
                                                            max_batch_size=config.batch_size)
                 | "Hits" >> beam.ParDo(Hits(), side) | "ByKey" >> beam.GroupByKey()
                 | "Rare" >> beam.FlatMap(_rare, config.max_corpus_df) | "ByParagraph" >> beam.GroupByKey()
                 | "Match" >> beam.FlatMap(_matches, side))  # fmt: skip
    outputs = [text_rows]
    if index.pmids:
        wanted = set(index.pmids)
        pmids = (p | "ReadArticles" >> ReadFromParquet(workdir.glob("articles"), columns=["pmcid", "pmid"])
                 | "WithPmid" >> beam.Filter(lambda a: a.get("pmid") is not None and str(a["pmid"]).strip() in wanted)
                 | "ByPmcid" >> beam.Map(lambda a: (a["pmcid"], str(a["pmid"]).strip())))  # fmt: skip
        outputs.append(paragraphs | "PmidMatch" >> beam.FlatMap(_pmid_matches, beam.pvalue.AsDict(pmids), side))
    _ = (tuple(outputs) | "All" >> beam.Flatten()
         | "Write" >> WriteToParquet(str(workdir.table("contamination") / "contamination"),
                                     schema=arrow_schema(Contamination), file_name_suffix=".parquet"))  # fmt: skip


def summarize(workdir: Workdir) -> dict[str, Any]:
    """Counts from what was written: rows and paragraphs per benchmark and rule."""
    files = workdir.files("contamination")
    per = tables.rows("""SELECT benchmark, rule, count(*), count(DISTINCT id), count(DISTINCT item_id)
                         FROM read_parquet($files) GROUP BY ALL ORDER BY ALL""", files)  # fmt: skip
    out: dict[str, Any] = {}
    for bench, rule, n, paragraphs, items in per:
        out.setdefault(bench, {})[rule] = {"rows": int(n), "paragraphs": int(paragraphs), "items": int(items)}
    total = tables.first_row("SELECT count(DISTINCT id) FROM read_parquet($files)", files)
    return {"paragraphs": tables.count_rows(workdir.files("paragraphs")) or 0,
            "contaminated_paragraphs": int(total[0]) if total else 0, "by_benchmark": out}  # fmt: skip


def run_decontaminate(workdir: Workdir, config: DecontaminateConfig, beam_argv: list[str] | None = None) -> dict[str, Any]:
    """Read the benchmarks, run the Beam pipeline; return the summary (also in W/_stages/decontaminate.json)."""
    if not workdir.has_table("paragraphs") or not workdir.has_table("articles"):
        raise ConfigError(f"no paragraphs or articles table in {workdir.root}; run `pmc-curate parse` first")
    if config.batch_size < 1:
        raise ConfigError("--batch-size must be >= 1")
    params = config.params()
    items = load_items(config.benchmarks)
    index = build_index(items, params)
    described = index.describe()
    log.info("decontaminate: %d items, index of %d entries (%d bytes) as a side input",
             len(items), described["entries"], described["entry_bytes"])  # fmt: skip
    with workdir.rewriting(("contamination",)) as out, make_pipeline(beam_argv) as p:  # swapped in whole at the end
        build(p, out, config, index)
    summary = summarize(workdir)
    summary["index"] = described
    summary["benchmarks"] = [dict(zip(("label", "format", "file"), parse_spec(s), strict=True)) for s in config.benchmarks]
    summary["parameters"] = params.__dict__
    (workdir.stages / f"{STAGE}.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def run(config: DecontaminateConfig, beam_argv: list[str]) -> int:
    """Entry point of `pmc-curate decontaminate`."""
    workdir = Workdir.of(config.workdir)
    storage.check_access(workdir.root)
    s = run_decontaminate(workdir, config, beam_argv)
    per = "; ".join(f"{b}: " + ", ".join(f"{r} {v['paragraphs']}" for r, v in rules.items())
                    for b, rules in s["by_benchmark"].items()) or "none"  # fmt: skip
    print(f"{s['contaminated_paragraphs']} of {s['paragraphs']} paragraphs overlap a benchmark item ({per}) "
          f"-> {workdir.table('contamination')}")
    return 0
