"""The parse stage's Beam transforms for files and packages: read, parse, keep one copy per PMCID, write.

    input specs -> ListInputs -> SpreadFiles -> ReadBytes -> SpreadDocs -> Parse -> GroupByPmcid
                -> KeepOnePerPmcid -> articles | paragraphs | rejects  -> WriteParseOutputs

A thin Beam shell around the pure `pipeline.jats` functions: DoFns only read, wire and count. The PMC
Cloud layout has its own reader (read_cloud.py) and shares WriteParseOutputs.
"""

from __future__ import annotations

import logging
import os
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from importlib import metadata
from typing import Any

import apache_beam as beam
from apache_beam.io.parquetio import WriteToParquet
from apache_beam.metrics import Metrics

from pipeline.core.errors import ConfigError, RecordError, RejectReason
from pipeline.core.logs import Heartbeat
from pipeline.core.records import Article, Paragraph, Reject, SourceVersion, arrow_schema, as_row
from pipeline.core.storage.beam_files import match_files, open_input
from pipeline.core.workdir import Workdir
from pipeline.jats import DEFAULT_MIN_TOKENS, ParsedArticle, language_id_name, parse_articles, tokenizer_name
from pipeline.jats.xml import DEFAULT_MAX_BYTES
from pipeline.sources import pmc_cloud
from pipeline.sources.filelist import FileListRow, apply_filelist, join_filelists, merge_order
from pipeline.stages.parse.fetching import DEFAULT_FETCH_CONCURRENCY, ConcurrentFetchDoFn
from pipeline.stages.parse.read_cloud import OUT_VERSIONS

log = logging.getLogger(__name__)

STAGE = "parse"
XML_SUFFIXES = (".xml", ".nxml", ".xml.gz", ".nxml.gz")  # .gz: decompressed as read, within --max-file-mb
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_GLOB_CHARS = set("*?[")

OUT_ARTICLES, OUT_PARAGRAPHS, OUT_REJECTS = "articles", "paragraphs", "rejects"


def _is_archive(path: str) -> bool:
    return path.lower().endswith(ARCHIVE_SUFFIXES)


def _wanted(path: str) -> bool:
    low = path.lower()
    return low.endswith(XML_SUFFIXES) or low.endswith(ARCHIVE_SUFFIXES)


def _file_list(path: str) -> bool:
    """A bulk package's .filelist.csv: read beside its package (sources/filelist.py), not an article."""
    return path.lower().endswith(".filelist.csv")


def expand_inputs(inputs: Iterable[str], skipped: list[str] | None = None) -> list[str]:
    """Files, directories (recursively: .xml/.nxml(.gz)/.tar.gz/.tgz/.tar) and glob patterns, on any
    Beam filesystem, to a sorted list of paths. ConfigError when an input matches nothing. Other files a
    directory or a glob holds are appended to `skipped` (they become rejects: every input is accounted for)."""
    paths: set[str] = set()
    others: set[str] = set()
    for spec in inputs:
        if "://" not in spec:
            # Absolute, so workers in another directory (Flink, Dataflow, a worker pool) read the same files.
            spec = os.path.abspath(spec) + ("/" if spec.endswith("/") else "")
        if _GLOB_CHARS & set(spec) or ("://" not in spec and os.path.isdir(spec)) or spec.endswith("/"):
            pattern = spec if _GLOB_CHARS & set(spec) else spec.rstrip("/") + "/**"
            listed = [p for p, _ in match_files(pattern)]
            found = [p for p in listed if _wanted(p)]
            others.update(p for p in listed if not _wanted(p) and not _file_list(p))
        else:
            try:
                found = [p for p, _ in match_files(spec)]
            except Exception as e:  # a missing file raises on some filesystems, returns [] on others
                raise ConfigError(f"input {spec!r} cannot be read: {e}") from e
        if not found:
            raise ConfigError(f"input {spec!r} matches no .xml/.nxml/.xml.gz/.tar.gz file")
        paths.update(found)
    if skipped is not None:
        skipped += sorted(others - paths)
    return sorted(paths)


class ReadInputs(ConcurrentFetchDoFn):
    """A path -> (source, bytes) per article file; archive members streamed one at a time.

    Size is checked before reading (file metadata, tar header) so memory stays bounded. A corrupt
    archive yields one CORRUPT_ARCHIVE reject; the members read before the damage are kept. Loose
    files are read up to `concurrency` at a time (fetching.py: a remote read waits a round trip), in
    input order; an archive is streamed in the bundle's thread, after the files before it.
    """

    def __init__(self, max_bytes: int, concurrency: int = DEFAULT_FETCH_CONCURRENCY) -> None:
        super().__init__(concurrency)
        self.max_bytes = max_bytes
        self.files = Metrics.counter(STAGE, "input_files")
        self.members = Metrics.counter(STAGE, "archive_members")
        self.skipped = Metrics.counter(STAGE, "archive_members_not_xml")

    def process(self, path: str, window: Any = beam.DoFn.WindowParam,
                timestamp: Any = beam.DoFn.TimestampParam) -> Iterator[Any]:
        self.files.inc()
        yield from super().process(path, window, timestamp)

    def inline(self, path: str) -> bool:
        return _is_archive(path)

    def fetch_inline(self, path: str) -> Iterator[Any]:
        yield from self._archive(path)

    def fetch(self, path: str) -> list[Any]:
        return list(self._file(path))

    def _reject(self, source: str, reason: RejectReason, detail: str) -> beam.pvalue.TaggedOutput:
        return beam.pvalue.TaggedOutput(OUT_REJECTS, as_row(Reject(source, STAGE, reason.value, detail)))

    def _file(self, path: str) -> Iterator[Any]:
        try:
            size = match_files(path)[0][1]
            if size > self.max_bytes:
                yield self._reject(path, RejectReason.TOO_LARGE, f"{size} bytes > limit {self.max_bytes} (--max-file-mb)")
                return
            with open_input(path) as f:
                data = f.read(self.max_bytes + 1)
        except Exception as e:  # permissions, vanished file, remote filesystem error
            yield self._reject(path, RejectReason.UNREADABLE, f"{type(e).__name__}: {e}"[:300])
            return
        yield path, data

    def _archive(self, path: str) -> Iterator[Any]:
        n = 0
        try:
            with open_input(path, uncompressed=True) as raw, \
                    tarfile.open(fileobj=raw, mode="r|*") as tf:
                for m in tf:
                    if not m.isfile():
                        continue
                    source = f"{path}!{m.name}"
                    if not m.name.lower().endswith(XML_SUFFIXES):
                        self.skipped.inc()
                        continue
                    self.members.inc()
                    if m.size > self.max_bytes:
                        n += 1
                        yield self._reject(source, RejectReason.TOO_LARGE, f"{m.size} bytes > limit {self.max_bytes} (--max-file-mb)")
                        continue
                    fobj = tf.extractfile(m)
                    data = fobj.read() if fobj is not None else b""
                    n += 1
                    yield source, data
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            yield self._reject(path, RejectReason.CORRUPT_ARCHIVE, f"after {n} XML members read intact: {type(e).__name__}: {e}"[:300])


class ParseDoFn(beam.DoFn):
    """(source, bytes) -> (pmcid, ParsedArticle), or rejects. The tokenizer and language model load once per worker.

    With file lists (PMCID -> License, Retracted), their license code comes first in the license's
    resolution and a retracted article is a RETRACTED reject unless keep_retracted.
    """

    def __init__(self, min_tokens: int, max_bytes: int, filelist: dict[str, FileListRow] | None = None,
                 keep_retracted: bool = False, licenses: frozenset[str] | None = None,
                 pmcids: pmc_cloud.PmcidFilter | None = None) -> None:
        self.min_tokens = min_tokens
        self.max_bytes = max_bytes
        self.filelist = filelist or {}
        self.keep_retracted = keep_retracted
        self.licenses = licenses
        self.pmcids = pmcids
        self.bytes_in = Metrics.counter(STAGE, "bytes")
        self.filtered = Metrics.counter(STAGE, "articles_filtered")

    def setup(self) -> None:
        # Load the tokenizer and language model now, not inside the first element's timing.
        parse_articles(b"<article><body><p>warm up</p></body></article>", "PMC0.xml", min_tokens=0)
        self.heartbeat = Heartbeat(log, "parse: files parsed by this worker")

    def process(self, element: tuple[str, bytes]) -> Iterator[Any]:
        source, data = element
        self.bytes_in.inc(len(data))
        self.heartbeat.tick()
        try:
            results = parse_articles(data, source, min_tokens=self.min_tokens, max_bytes=self.max_bytes)
        except RecordError as e:
            results = [Reject(source, STAGE, e.reason.value, e.detail)]
        except Exception as e:  # a parser bug must not kill the run: keep the file as a reject
            log.exception("unexpected error parsing %s", source)
            results = [Reject(source, STAGE, RejectReason.PARSE_ERROR.value, f"{type(e).__name__}: {e}"[:300])]
        for r in results:
            if isinstance(r, Reject):
                yield beam.pvalue.TaggedOutput(OUT_REJECTS, as_row(r))
                continue
            a = r.article
            retracted = apply_filelist(a, self.filelist.get(a.pmcid), self.keep_retracted)
            if retracted:
                yield beam.pvalue.TaggedOutput(OUT_REJECTS, as_row(Reject(
                    source, STAGE, RejectReason.RETRACTED.value, retracted, record_id=a.pmcid)))
                continue
            if (self.licenses is not None and a.license not in self.licenses) or \
                    (self.pmcids is not None and not self.pmcids(a.pmcid)):
                self.filtered.inc()
                continue
            yield a.pmcid, r


class KeepOnePerPmcid(beam.DoFn):
    """The same PMCID from several inputs: keep the one from the newest baseline/incremental package, else
    the smallest source path (deterministic on any runner), reject the others as DUPLICATE_ARTICLE."""

    def __init__(self) -> None:
        self.articles = Metrics.counter(STAGE, "articles")
        self.paragraphs = Metrics.counter(STAGE, "paragraphs")
        self.short = Metrics.counter(STAGE, "short_paragraphs_dropped")
        self.no_body = Metrics.counter(STAGE, "articles_without_paragraphs")

    def process(self, element: tuple[str, Iterable[ParsedArticle]]) -> Iterator[Any]:
        pmcid, group = element
        ordered = sorted(group, key=lambda p: merge_order(p.article.source))
        kept, dups = ordered[0], ordered[1:]
        for d in dups:
            yield beam.pvalue.TaggedOutput(
                OUT_REJECTS,
                as_row(Reject(d.article.source, STAGE, RejectReason.DUPLICATE_ARTICLE.value,
                              f"{pmcid} also in {kept.article.source}, which is kept (newest package, else first by source path)",
                              record_id=pmcid)),
            )
        self.articles.inc()
        self.paragraphs.inc(len(kept.paragraphs))
        self.short.inc(kept.n_short_paragraphs)
        if not kept.paragraphs:
            self.no_body.inc()
        yield beam.pvalue.TaggedOutput(OUT_ARTICLES, as_row(kept.article))
        for p in kept.paragraphs:
            yield beam.pvalue.TaggedOutput(OUT_PARAGRAPHS, as_row(p))


class CountRejects(beam.DoFn):
    """A Beam counter per reject reason (reject_<reason>)."""

    def process(self, row: dict[str, Any]) -> Iterator[dict[str, Any]]:
        Metrics.counter(STAGE, f"reject_{row['reason']}").inc()
        yield row


class ParseArticles(beam.PTransform):
    """Input specs -> {"articles", "paragraphs", "rejects"} PCollections of rows (dicts)."""

    def __init__(self, inputs: list[str], *, min_tokens: int = DEFAULT_MIN_TOKENS,
                 max_bytes: int = DEFAULT_MAX_BYTES, keep_retracted: bool = False,
                 licenses: frozenset[str] | None = None, pmcids: pmc_cloud.PmcidFilter | None = None,
                 fetch_concurrency: int = DEFAULT_FETCH_CONCURRENCY) -> None:
        super().__init__()
        self.fetch_concurrency = fetch_concurrency
        self.skipped: list[str] = []
        self.paths = expand_inputs(inputs, self.skipped)
        self.min_tokens = min_tokens
        self.max_bytes = max_bytes
        self.filelist = join_filelists(p for p in self.paths if _is_archive(p))
        self.options = {"keep_retracted": keep_retracted, "licenses": licenses, "pmcids": pmcids}

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        files = (
            pbegin
            | "ListInputs" >> beam.Create(self.paths)
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadBytes" >> beam.ParDo(ReadInputs(self.max_bytes, self.fetch_concurrency)).with_outputs(OUT_REJECTS, main="docs")
        )
        parsed = (
            files.docs
            | "SpreadDocs" >> beam.Reshuffle()
            | "Parse" >> beam.ParDo(ParseDoFn(self.min_tokens, self.max_bytes, self.filelist, **self.options)).with_outputs(OUT_REJECTS, main="parsed")
        )
        kept = (
            parsed.parsed
            | "GroupByPmcid" >> beam.GroupByKey()
            | "KeepOnePerPmcid" >> beam.ParDo(KeepOnePerPmcid()).with_outputs(OUT_ARTICLES, OUT_PARAGRAPHS, OUT_REJECTS)
        )
        unsupported = (
            pbegin
            | "ListOtherFiles" >> beam.Create(self.skipped)
            | "UnsupportedFiles" >> beam.Map(lambda path: as_row(Reject(
                path, STAGE, RejectReason.UNSUPPORTED_FILE.value,
                "not an article file this parse reads (.xml, .nxml, .xml.gz, .nxml.gz, .tar.gz, .tgz, .tar)")))
        )
        rejects = (
            (files[OUT_REJECTS], parsed[OUT_REJECTS], kept[OUT_REJECTS], unsupported)
            | "AllRejects" >> beam.Flatten()
            | "CountRejects" >> beam.ParDo(CountRejects())
        )
        return {OUT_ARTICLES: kept[OUT_ARTICLES], OUT_PARAGRAPHS: kept[OUT_PARAGRAPHS], OUT_REJECTS: rejects}


def schema_metadata(min_tokens: int) -> dict[str, str]:
    """Provenance stored in every Parquet file's schema metadata."""
    try:
        version = metadata.version("pmc-curate")
    except metadata.PackageNotFoundError:  # pragma: no cover
        version = "dev"
    return {
        "stage": STAGE,
        "tokenizer": tokenizer_name(),
        "language_id": language_id_name(),
        "min_tokens": str(min_tokens),
        "pmc_curate_version": version,
    }


class WriteParseOutputs(beam.PTransform):
    """The three outputs of ParseArticles -> W/articles/, W/paragraphs/, W/rejects/parse-*.parquet."""

    def __init__(self, workdir: Workdir, min_tokens: int, tag: str = "") -> None:
        super().__init__()
        self.workdir = workdir
        self.meta = schema_metadata(min_tokens)
        self.tag = f"-{tag}" if tag else ""  # --update stages its tables as part-u<stamp>-* (update.py)

    def expand(self, outputs: dict[str, beam.PCollection]) -> dict[str, Any]:
        w = self.workdir
        targets = {
            OUT_ARTICLES: (Article, str(w.articles / f"part{self.tag}")),
            OUT_PARAGRAPHS: (Paragraph, str(w.paragraphs / f"part{self.tag}")),
            OUT_REJECTS: (Reject, str(w.rejects / f"{STAGE}{self.tag}")),
            OUT_VERSIONS: (SourceVersion, str(w.table(OUT_VERSIONS) / f"part{self.tag}")),
        }
        return {
            name: outputs[name] | f"Write{name.title()}" >> WriteToParquet(
                prefix, schema=arrow_schema(cls, self.meta), file_name_suffix=".parquet", codec="zstd"
            )
            for name, (cls, prefix) in targets.items() if name in outputs
        }
