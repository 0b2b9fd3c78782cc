"""The parse stage: PMC-OA JATS -> articles, paragraphs, rejects (and versions, for the PMC Cloud layout).

    pmc-curate parse INPUT... --workdir W [--min-tokens 64] [--max-file-mb 64] [Beam flags]
    pmc-curate parse s3://pmc-oa-opendata/ --workdir W [--inventory MANIFEST] [--license L] [--pmcids F|A-B]
                     [--include-manuscripts] [--keep-retracted] [--update] [--fetch-concurrency 16]

INPUT is loose files, directories, globs and .tar.gz packages (with their .filelist.csv when beside
them: transforms.py), or the root of a PMC Cloud layout: the live bucket or any mirror (read_cloud.py,
`pipeline.sources.pmc_cloud`). `--update` re-reads only what changed since W's last run (update.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import apache_beam as beam

from beam_runners.dryrun import is_dry_run
from beam_runners.options import make_pipeline, pipeline_options
from pipeline.core import storage
from pipeline.core.errors import ConfigError
from pipeline.core.options import option
from pipeline.core.storage.beam_files import use_pipeline_options
from pipeline.core.workdir import Workdir
from pipeline.jats import DEFAULT_MIN_TOKENS
from pipeline.jats.tokens import require_tokenizer
from pipeline.jats.xml import DEFAULT_MAX_BYTES
from pipeline.sources import pmc_cloud
from pipeline.stages.parse import update, update_journal
from pipeline.stages.parse.fetching import DEFAULT_FETCH_CONCURRENCY, check_concurrency
from pipeline.stages.parse.read_cloud import OUT_VERSIONS, ReadPmcCloud
from pipeline.stages.parse.summary import format_summary, summarize
from pipeline.stages.parse.transforms import (
    OUT_ARTICLES,
    OUT_PARAGRAPHS,
    STAGE,
    ParseArticles,
    WriteParseOutputs,
    schema_metadata,
)


@dataclass
class Config:
    """`pmc-curate parse`: what to read, what to keep."""

    inputs: list[str] = option(
        positional=True, metavar="INPUT", input_path=True,
        help=".xml/.nxml files, directories, glob patterns or PMC-OA .tar.gz packages (any Beam filesystem), "
             "or one PMC Cloud layout: s3://pmc-oa-opendata/ or a mirror of it")
    workdir: str = option(fixed=True, help="work directory (articles/, paragraphs/, rejects/ are written here)")
    # The paper kept paragraphs of at least 64 tokens.
    min_tokens: int = option(DEFAULT_MIN_TOKENS, help="drop body paragraphs with fewer tokens (the paper kept >= 64)")
    max_file_mb: float = option(DEFAULT_MAX_BYTES / 2**20,
                                help="reject an article file larger than this, before reading it")
    inventory: str | None = option(None, metavar="MANIFEST",
                                   help="PMC Cloud layout: the inventory manifest.json to index by (default: the newest)")
    license: str | None = option(
        None, metavar="CODES",
        help="keep only these licenses: codes (CC BY, CC BY-NC-ND, CC0, TDM ...) or groups "
             "(commercial, noncommercial, cc, tdm, other, none), comma separated")
    include_manuscripts: bool = option(
        False, help="PMC Cloud layout: also parse author manuscripts (off: the paper used the OA subset)")
    keep_retracted: bool = option(
        False, help="keep retracted articles and retraction notices (flagged is_retracted) instead of rejecting them")
    pmcids: str | None = option(None, metavar="FILE|A-B",
                                help="only these PMCIDs: a file with one a line, or a range such as PMC100-PMC200")
    fetch_concurrency: int = option(
        DEFAULT_FETCH_CONCURRENCY, metavar="N", speed_only=True,
        help="reads in flight per worker thread (remote JSON/XML/loose files): each waits a network round trip; "
             "memory is bounded by N x --max-file-mb")
    update: bool = option(
        False, help="PMC Cloud layout: diff the newest inventory against W's previous run and parse only new and "
                    "changed versions, rewriting only the part files that held affected articles")  # fmt: skip


def build_transform(config: Config, beam_argv: list[str], max_bytes: int) -> beam.PTransform:
    """ReadPmcCloud for one PMC Cloud layout, else ParseArticles for files and packages."""
    licenses = pmc_cloud.license_filter(config.license)
    pmcids = pmc_cloud.pmcid_filter(config.pmcids)
    cloud = [i for i in config.inputs if pmc_cloud.is_cloud_layout(i)]
    if cloud:
        if len(config.inputs) > 1:
            raise ConfigError(f"{cloud[0]} is a PMC Cloud layout: parse it on its own, not with other inputs")
        index = pmc_cloud.open_index(cloud[0], config.inventory)
        return ReadPmcCloud(index, beam_argv, min_tokens=config.min_tokens, max_bytes=max_bytes,
                            keep_retracted=config.keep_retracted, include_manuscripts=config.include_manuscripts,
                            licenses=licenses, pmcids=pmcids,
                            fetch_concurrency=config.fetch_concurrency)  # fmt: skip
    if config.inventory:
        raise ConfigError("--inventory needs a PMC Cloud layout (a root with PMC<id>.<v>/ prefixes) as input")
    return ParseArticles(config.inputs, min_tokens=config.min_tokens, max_bytes=max_bytes,
                         keep_retracted=config.keep_retracted, licenses=licenses, pmcids=pmcids,
                         fetch_concurrency=config.fetch_concurrency)  # fmt: skip


def run(config: Config, beam_argv: list[str]) -> int:
    """Run the parse stage as a Beam pipeline and print a summary; returns the exit status."""
    if config.min_tokens < 0:
        raise ConfigError("--min-tokens must be >= 0")
    if config.max_file_mb <= 0:
        raise ConfigError("--max-file-mb must be > 0")
    check_concurrency(config.fetch_concurrency)
    require_tokenizer()
    workdir = Workdir.of(config.workdir)
    options = pipeline_options(beam_argv)
    dry_run = is_dry_run(options)  # --dry-run FILE: build the job, write it to FILE, write nothing to W
    storage.check_access(workdir.root, write=not dry_run)  # a missing bucket or a dead endpoint stops here
    max_bytes = int(config.max_file_mb * 2**20)
    use_pipeline_options(options)  # the launcher lists the inputs with the same --s3_* settings as the workers
    transform = build_transform(config, beam_argv, max_bytes)  # ConfigError early
    t0 = time.time()

    def run_pipeline(t: beam.PTransform, tag: str = "", out: Workdir = workdir) -> None:
        with make_pipeline(options) as p:
            _ = p | "ParseArticles" >> t | "Write" >> WriteParseOutputs(out, config.min_tokens, tag)

    update_summary = None
    if config.update:
        if not isinstance(transform, ReadPmcCloud):
            raise ConfigError("--update needs a PMC Cloud layout (s3://pmc-oa-opendata/ or a mirror) as input")
        update_summary = update.run_update(workdir, transform, run_pipeline, dry_run=dry_run)
    elif not dry_run:
        update_journal.discard(workdir)  # a full parse rebuilds every table: a killed update has nothing left to finish
        # new folders beside the tables, swapped in when the pipeline has finished (articles last)
        with workdir.rewriting((OUT_PARAGRAPHS, OUT_VERSIONS, "tombstones", "rejects", OUT_ARTICLES),
                               rejects_prefix=f"{STAGE}-") as out:  # fmt: skip
            run_pipeline(transform, out=out)
    else:
        run_pipeline(transform)  # raises DryRunFinished once the job is written
    s: dict[str, Any] = summarize(workdir)
    if update_summary is not None:
        s["update"] = update_summary
    s["seconds"] = round(time.time() - t0, 2)
    s["inputs"] = list(config.inputs)
    if isinstance(transform, ReadPmcCloud):
        s["layout"] = "pmc-cloud"
        s["index"] = transform.index.manifest or "listing"
        s["inventory_parts"] = len(transform.index.parts)
    else:
        s["input_files"] = len(transform.paths)
    (workdir.stages / f"{STAGE}.json").write_text(json.dumps({"stage": STAGE, **s, **schema_metadata(config.min_tokens)}, indent=2))
    print(format_summary(s))
    return 0
