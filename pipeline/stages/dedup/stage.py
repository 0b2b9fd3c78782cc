"""`pmc-curate dedup`: exact, near and article-level duplicates, and boilerplate, marked per paragraph.

    pmc-curate dedup --workdir W [--bands 16 --rows 8 --threshold 0.7 --shingle-words 5] [--no-near] [Beam flags]

Nothing is deleted: W/duplicates holds one row per paragraph that has a copy, is boilerplate or belongs
to an article published twice (pipeline.core.records.Duplicate), and `curate` recipes decide
(`--param dedup=exact|near`, or the `duplicates` view). The kept copy of every group is the first in
a documented order (pipeline.dedup.keep): newest version, highest educational score where labels
exist, longest, then (article_id, path); the summary says which steps applied. The settings are
recorded in W/_stages/dedup.json, which curate copies into every subset's manifest. See docs/dedup.md.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import apache_beam as beam
from apache_beam.io.parquetio import ReadFromParquet, WriteToParquet

from beam_runners.options import make_pipeline
from pipeline.core import storage, tables
from pipeline.core.errors import ConfigError
from pipeline.core.records import Duplicate, arrow_schema
from pipeline.core.workdir import Workdir
from pipeline.dedup.keep import describe_order
from pipeline.stages.dedup import transforms as T
from pipeline.stages.dedup.config import DedupConfig

log = logging.getLogger(__name__)

Config = DedupConfig
STAGE = T.STAGE


def score_table(workdir: Workdir, choice: str) -> str | None:
    """The table whose educational scores order the kept copy, or None (the order then skips that step)."""
    if choice == "none":
        return None
    if choice != "auto":
        if not workdir.has_table(choice):
            raise ConfigError(f"--labels {choice}: no {choice} table in {workdir.root}")
        return choice
    return next((t for t in ("labels", "labels_imported") if workdir.has_table(t)), None)


def build(p: beam.Pipeline, workdir: Workdir, config: DedupConfig, scores: str | None, check_prefix: str) -> None:
    """The stage's graph on pipeline `p` (see transforms.py for the steps)."""
    mh, bp = config.minhash(), config.boilerplate()
    paragraphs = p | "ReadParagraphs" >> ReadFromParquet(workdir.glob("paragraphs"), columns=["id", "article_id", "path", "text"])
    feats = (paragraphs | "Batch" >> beam.BatchElements(min_batch_size=min(64, config.batch_size), max_batch_size=config.batch_size)
             | "Features" >> beam.ParDo(T.Features(mh if config.near else None, bp, config.digits_to_zero)))  # fmt: skip
    exact = (feats | "ByHash" >> beam.FlatMap(lambda f: [(f["hash"], f["id"])] if f["hash"] is not None else [])
             | "ExactGroups" >> beam.GroupByKey() | "ExactMembers" >> beam.FlatMap(T.exact_members))  # fmt: skip
    memberships = [exact]
    if config.near:
        edges = (feats | "Bands" >> beam.FlatMap(lambda f: [(k, (f["id"], f["sketch"])) for k in f["bands"]])
                 | "Buckets" >> beam.GroupByKey() | "BucketEdges" >> beam.ParDo(T.BucketEdges(mh)))  # fmt: skip
        labels, unconverged = edges | "Components" >> T.Components(config.cc_rounds)
        memberships.append(labels | "NearMembers" >> beam.Map(lambda kv: (kv[0], (T.NEAR, kv[1]))))
        _ = (unconverged | "FormatCheck" >> beam.Map(str)
             | "WriteCheck" >> beam.io.WriteToText(check_prefix, file_name_suffix=".txt"))  # fmt: skip
    versions = (p | "ReadArticles" >> ReadFromParquet(workdir.glob("articles"), columns=["pmcid", "version"])
                | "Versions" >> beam.Map(lambda a: (a["pmcid"], a.get("version"))))  # fmt: skip
    by_article = feats | "ByArticle" >> beam.Map(lambda f: (f["article_id"], (f["id"], f["path"], f["n_chars"], f["hash"])))
    joined = ({"versions": versions, "paragraphs": by_article} | "JoinArticles" >> beam.CoGroupByKey()
              | "Members" >> beam.FlatMap(T.article_join).with_outputs("body", main="members"))  # fmt: skip
    articles = joined.body | "Bodies" >> beam.GroupByKey() | "ArticleCopies" >> beam.FlatMap(T.article_copies)
    keyed: dict[str, Any] = {"member": joined.members}
    if scores:
        keyed["score"] = (p | "ReadScores" >> ReadFromParquet(workdir.glob(scores), columns=["id", "educational_score"])
                          | "Scores" >> beam.Map(lambda r: (r["id"], r["educational_score"])))  # fmt: skip
    keys = keyed | "JoinScores" >> beam.CoGroupByKey() | "KeepKeys" >> beam.FlatMap(T.keep_keys)
    groups = tuple(memberships) | "AllGroups" >> beam.Flatten()
    ranked = ({"key": keys, "groups": groups} | "JoinKeys" >> beam.CoGroupByKey()
              | "GroupMembers" >> beam.FlatMap(T.group_members) | "ByGroup" >> beam.GroupByKey()
              | "Rank" >> beam.FlatMap(T.rank_group))  # fmt: skip
    shares = (feats | "Sentences" >> beam.FlatMap(
                  lambda f: [(h, (f["id"], f["article_id"], n, f["n_words"])) for h, n in f["sentences"]])
              | "BySentence" >> beam.GroupByKey() | "Common" >> beam.ParDo(T.CommonSentences(bp.sentence_min_articles))
              | "ByParagraph" >> beam.GroupByKey() | "Share" >> beam.Map(T.share_of))  # fmt: skip
    _ = ((ranked, articles, shares) | "AllFacts" >> beam.Flatten() | "ById" >> beam.GroupByKey()
         | "Rows" >> beam.Map(T.duplicate_row, bp)
         | "WriteDuplicates" >> WriteToParquet(str(workdir.table("duplicates") / "duplicates"),
                                               schema=arrow_schema(Duplicate), file_name_suffix=".parquet"))  # fmt: skip


def summarize(workdir: Workdir) -> dict[str, Any]:
    """Counts from what was written: rows, groups, copies a recipe would drop, boilerplate, largest groups."""
    files = workdir.files("duplicates")
    row = tables.first_row(
        """SELECT count(*), count(exact_group), count(DISTINCT exact_group), count(*) FILTER (WHERE exact_rank > 0),
                  count(near_group), count(DISTINCT near_group), count(*) FILTER (WHERE near_rank > 0),
                  count(*) FILTER (WHERE boilerplate), count(DISTINCT article_group),
                  count(DISTINCT article_id) FILTER (WHERE article_rank > 0)
           FROM read_parquet($files)""", files) or (0,) * 10  # fmt: skip
    names = ("rows", "exact_paragraphs", "exact_groups", "exact_copies", "near_paragraphs", "near_groups",
             "near_copies", "boilerplate_paragraphs", "article_groups", "article_copies")  # fmt: skip
    largest = tables.rows(
        """SELECT coalesce(near_group, exact_group) AS g, any_value(group_size), any_value(group_articles),
                  bool_or(boilerplate) FROM read_parquet($files) WHERE g IS NOT NULL
           GROUP BY g ORDER BY 2 DESC, g LIMIT 5""", files)  # fmt: skip
    return {**dict(zip(names, (int(v) for v in row), strict=True)),
            "paragraphs": tables.count_rows(workdir.files("paragraphs")) or 0,
            "largest_groups": [{"example": g, "paragraphs": n, "articles": a, "boilerplate": b} for g, n, a, b in largest]}  # fmt: skip


def run_dedup(workdir: Workdir, config: DedupConfig, beam_argv: list[str] | None = None) -> dict[str, Any]:
    """Run the Beam pipeline; return the summary (also written to W/_stages/dedup.json)."""
    if not workdir.has_table("paragraphs") or not workdir.has_table("articles"):
        raise ConfigError(f"no paragraphs or articles table in {workdir.root}; run `pmc-curate parse` first")
    if config.cc_rounds < 1 or config.batch_size < 1:
        raise ConfigError("--cc-rounds and --batch-size must be >= 1")
    mh, _ = config.minhash(), config.boilerplate()  # ConfigError on bad thresholds, before any work
    scores = score_table(workdir, config.labels)
    has_versions = bool((tables.first_row("SELECT count(version) FROM read_parquet($files, union_by_name = true)",
                                          workdir.files("articles")) or (0,))[0])  # fmt: skip
    order = describe_order(has_versions=has_versions, has_scores=scores is not None)
    log.info("dedup: %s", order)
    check = workdir.cache / "dedup" / "unconverged"
    for f in check.parent.glob("unconverged*"):
        f.unlink()
    with workdir.rewriting(("duplicates",)) as out:  # swapped in whole once the pipeline has finished
        with make_pipeline(beam_argv) as p:
            build(p, out, config, scores, str(check))
        out_of_shape = sum(int(f.read_text().strip() or 0) for f in check.parent.glob("unconverged*"))
        if out_of_shape:  # the previous table stays
            raise ConfigError(f"dedup: the connected components did not converge in {config.cc_rounds} rounds "
                              f"({out_of_shape} nodes out of shape); re-run with a larger --cc-rounds")  # fmt: skip
    summary = summarize(workdir)
    summary["keep_order"] = order
    summary["scores_from"] = scores
    summary["parameters"] = {"near": config.near, **(mh.describe() if config.near else {"digits_to_zero": config.digits_to_zero}),
                             "boilerplate": config.boilerplate().__dict__, "cc_rounds": config.cc_rounds}  # fmt: skip
    (workdir.stages / f"{STAGE}.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def run(config: DedupConfig, beam_argv: list[str]) -> int:
    """Entry point of `pmc-curate dedup`."""
    workdir = Workdir.of(config.workdir)
    storage.check_access(workdir.root)
    s = run_dedup(workdir, config, beam_argv)
    print(f"{s['paragraphs']} paragraphs: {s['exact_copies']} exact copies in {s['exact_groups']} groups, "
          f"{s['near_copies']} near copies in {s['near_groups']} groups, {s['boilerplate_paragraphs']} boilerplate, "
          f"{s['article_copies']} articles published again -> {workdir.table('duplicates')}")
    print(s["keep_order"])
    return 0
