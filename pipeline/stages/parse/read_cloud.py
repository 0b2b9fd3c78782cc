"""The Beam part of the PMC Cloud reader: index -> versions -> one canonical version per PMCID -> XML -> records.

    inventory parts (Create, Reshuffle) -> ReadInventoryPart   (parts read in parallel)
    | or listed entries (Create)
    -> Reshuffle -> FetchMetadata (JSON) -> GroupByKey(pmcid) -> ChooseVersion
    -> Reshuffle -> FetchXml (MD5 checked) -> ParseVersion

FetchMetadata and FetchXml keep up to --fetch-concurrency reads in flight per DoFn instance (fetching.py):
on the real bucket each GET waits a network round trip.
    -> articles / paragraphs / rejects / versions

Objects are read through `pipeline.storage` (fsspec), not Beam's FileSystems: the same settings reach
every worker (`storage.configure(argv)` in `setup`), and the public bucket is read anonymously.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline.core import storage
from pipeline.core.errors import RecordError, RejectReason
from pipeline.core.records import Reject, SourceVersion, as_row
from pipeline.core.storage import Location
from pipeline.jats import parse_articles
from pipeline.jats.license import License, from_code, resolve_license
from pipeline.sources import pmc_cloud as pc
from pipeline.stages.parse.fetching import DEFAULT_FETCH_CONCURRENCY, ConcurrentFetchDoFn

log = logging.getLogger(__name__)

STAGE = "parse"
OUT_ARTICLES, OUT_PARAGRAPHS, OUT_REJECTS, OUT_VERSIONS = "articles", "paragraphs", "rejects", "versions"


def _reject(source: str, reason: RejectReason, detail: str, record_id: str | None = None) -> Any:
    return beam.pvalue.TaggedOutput(OUT_REJECTS, as_row(Reject(source, STAGE, reason.value, detail[:300], record_id)))


def _version_row(meta: pc.VersionMeta | pc.Entry, snapshot: str, outcome: str, **kw: Any) -> Any:
    e = meta.entry if isinstance(meta, pc.VersionMeta) else meta
    code = meta.license_code if isinstance(meta, pc.VersionMeta) else None
    row = SourceVersion(e.key, e.pmcid, e.version, e.etag, e.last_modified, snapshot, outcome, code, **kw)
    return beam.pvalue.TaggedOutput(OUT_VERSIONS, as_row(row))


class _StorageDoFn(beam.DoFn):
    def __init__(self, root: str, argv: list[str]) -> None:
        self.root = root
        self.argv = list(argv)

    def setup(self) -> None:
        storage.configure(self.argv)  # workers get the launcher's --s3_* settings

    def loc(self, key: str) -> Location:
        return Location(self.root) / key


class _StorageFetchDoFn(ConcurrentFetchDoFn):
    """Reads objects of the layout, up to `concurrency` at a time (fetching.py), outputs in input order."""

    def __init__(self, root: str, argv: list[str], concurrency: int) -> None:
        super().__init__(concurrency)
        self.root = root
        self.argv = list(argv)

    def setup(self) -> None:
        storage.configure(self.argv)  # workers get the launcher's --s3_* settings
        super().setup()

    def loc(self, key: str) -> Location:
        return Location(self.root) / key

    def fetch(self, element: Any) -> list[Any]:
        return list(self.read(element))

    def read(self, element: Any) -> Iterator[Any]:
        raise NotImplementedError


class ReadInventoryPart(_StorageDoFn):
    """A csv.gz part key -> the Entries it names; a missing or corrupt part is one reject."""

    def __init__(self, root: str, argv: list[str], columns: tuple[str, ...]) -> None:
        super().__init__(root, argv)
        self.columns = columns
        self.rows = Metrics.counter(STAGE, "inventory_rows")

    def process(self, key: str) -> Iterator[Any]:
        loc = self.loc(key)
        try:
            f = loc.open("rb")
        except FileNotFoundError:
            yield _reject(str(loc), RejectReason.INVENTORY_PART_MISSING, "the manifest names this part; it is not there")
            return
        except Exception as e:  # permissions, network
            yield _reject(str(loc), RejectReason.UNREADABLE, f"{type(e).__name__}: {e}")
            return
        n = 0
        try:
            with f:
                for entry in pc.iter_part(f, self.columns):  # streamed: a part of millions of rows stays flat
                    n += 1
                    yield entry
        except RecordError as e:
            yield _reject(str(loc), e.reason, e.detail)
        except Exception as e:  # the connection dropped mid-part
            yield _reject(str(loc), RejectReason.UNREADABLE, f"after {n} rows: {type(e).__name__}: {e}")
        self.rows.inc(n)


class FetchMetadata(_StorageFetchDoFn):
    """Entry -> (pmcid, VersionMeta); a missing or unreadable JSON is a reject (and a `rejected` version)."""

    def __init__(self, root: str, argv: list[str], snapshot: str, concurrency: int = DEFAULT_FETCH_CONCURRENCY) -> None:
        super().__init__(root, argv, concurrency)
        self.snapshot = snapshot

    def read(self, entry: pc.Entry) -> Iterator[Any]:
        loc = self.loc(entry.json_key)
        try:
            try:
                data = loc.read_bytes()
            except FileNotFoundError:
                if entry.json_key.startswith("metadata/"):  # the prefix holds a copy
                    loc = self.loc(f"{entry.key}/{entry.key}.json")
                    data = loc.read_bytes()
                else:
                    loc = self.loc(f"metadata/{entry.key}.json")
                    data = loc.read_bytes()
            meta = pc.parse_metadata(data, entry)
        except FileNotFoundError:
            yield _reject(str(loc), RejectReason.METADATA_MISSING, f"{entry.key}: no JSON", entry.key)
            yield _version_row(entry, self.snapshot, "rejected", detail=RejectReason.METADATA_MISSING.value)
            return
        except RecordError as e:
            yield _reject(str(loc), e.reason, e.detail, entry.key)
            yield _version_row(entry, self.snapshot, "rejected", detail=e.reason.value)
            return
        except Exception as e:
            yield _reject(str(loc), RejectReason.UNREADABLE, f"{type(e).__name__}: {e}", entry.key)
            yield _version_row(entry, self.snapshot, "rejected", detail=RejectReason.UNREADABLE.value)
            return
        yield meta.entry.pmcid, meta


class ChooseVersion(beam.DoFn):
    """(pmcid, [VersionMeta]) -> the canonical VersionMeta to fetch; a version row for every other one."""

    def __init__(self, snapshot: str, keep_retracted: bool, include_manuscripts: bool,
                 licenses: frozenset[str] | None, root: str) -> None:
        self.snapshot = snapshot
        self.keep_retracted = keep_retracted
        self.include_manuscripts = include_manuscripts
        self.licenses = licenses
        self.root = root

    def process(self, element: tuple[str, Iterable[pc.VersionMeta]]) -> Iterator[Any]:
        _, group = element
        c = pc.choose_version(group, self.keep_retracted)
        for v, outcome, reason, detail in c.outcomes:
            Metrics.counter(STAGE, f"versions_{outcome}").inc()
            if reason is not None:
                yield _reject(f"{self.root}/{v.entry.key}", reason, detail, v.entry.key)
            yield _version_row(v, self.snapshot, outcome, detail=detail)
        m = c.chosen
        if m is None:
            return
        if m.is_manuscript and not self.include_manuscripts:
            yield _version_row(m, self.snapshot, "manuscript", detail="author manuscript; --include-manuscripts keeps it")
            return
        name = from_code(m.license_code)
        if self.licenses is not None and name is not None and name not in self.licenses:
            yield _version_row(m, self.snapshot, "license_filtered", detail=f"{m.license_code} not in --license")
            return
        yield m


class FetchXml(_StorageFetchDoFn):
    """VersionMeta -> (VersionMeta, source, bytes), the MD5 checked against the JSON's; else a reject.
    At most `concurrency` XMLs of at most max_bytes + 1 bytes each are held at once."""

    def __init__(self, root: str, argv: list[str], snapshot: str, max_bytes: int,
                 concurrency: int = DEFAULT_FETCH_CONCURRENCY) -> None:
        super().__init__(root, argv, concurrency)
        self.snapshot = snapshot
        self.max_bytes = max_bytes

    def read(self, meta: pc.VersionMeta) -> Iterator[Any]:
        loc = self.loc(pc.xml_key(meta))
        key = meta.entry.key
        try:
            # One ranged GET: no HEAD for the size, and never more than the limit + 1 bytes downloaded.
            try:
                data = loc.read_bytes(limit=self.max_bytes)
            except FileNotFoundError:
                raise RecordError(RejectReason.NO_XML, f"{key}: the version has no XML") from None
            if len(data) > self.max_bytes:
                raise RecordError(RejectReason.TOO_LARGE, f"more than {self.max_bytes} bytes (--max-file-mb)")
            pc.check_md5(data, meta)
        except RecordError as e:
            yield _reject(str(loc), e.reason, e.detail, key)
            yield _version_row(meta, self.snapshot, "rejected", detail=e.reason.value)
            return
        except Exception as e:
            yield _reject(str(loc), RejectReason.UNREADABLE, f"{type(e).__name__}: {e}", key)
            yield _version_row(meta, self.snapshot, "rejected", detail=RejectReason.UNREADABLE.value)
            return
        yield meta, str(loc), data


class ParseVersion(beam.DoFn):
    """(VersionMeta, source, bytes) -> the article (with its version fields and resolved license) and paragraphs."""

    def __init__(self, snapshot: str, min_tokens: int, max_bytes: int, keep_retracted: bool,
                 licenses: frozenset[str] | None) -> None:
        self.snapshot = snapshot
        self.min_tokens = min_tokens
        self.max_bytes = max_bytes
        self.keep_retracted = keep_retracted
        self.licenses = licenses
        self.disagree = Metrics.counter(STAGE, "license_json_xml_disagree")

    def setup(self) -> None:
        parse_articles(b"<article><body><p>warm up</p></body></article>", "PMC0.xml", min_tokens=0)

    def process(self, element: tuple[pc.VersionMeta, str, bytes]) -> Iterator[Any]:
        meta, source, data = element
        key = meta.entry.key
        try:
            results = parse_articles(data, source, min_tokens=self.min_tokens, max_bytes=self.max_bytes)
        except RecordError as e:
            results = [Reject(source, STAGE, e.reason.value, e.detail)]
        except Exception as e:  # a parser bug must not kill the run
            log.exception("unexpected error parsing %s", source)
            results = [Reject(source, STAGE, RejectReason.PARSE_ERROR.value, f"{type(e).__name__}: {e}"[:300])]
        rejects = [r for r in results if isinstance(r, Reject)]
        parsed = [r for r in results if not isinstance(r, Reject)]
        for r in rejects:
            r.record_id = key
            yield beam.pvalue.TaggedOutput(OUT_REJECTS, as_row(r))
        if not parsed:
            yield _version_row(meta, self.snapshot, "rejected", detail=rejects[0].reason if rejects else None)
            return
        p = parsed[0]  # one article per version file
        a = p.article
        if (a.article_type or "").lower() == "retraction" and not self.keep_retracted:
            yield _reject(source, RejectReason.RETRACTION_NOTICE,
                          f"{key} is a retraction notice (article-type=retraction); --keep-retracted keeps it", key)
            yield _version_row(meta, self.snapshot, "retracted", detail=RejectReason.RETRACTION_NOTICE.value)
            return
        xml_lic = License(a.license, a.license_url, a.commercial)
        lic, agrees = resolve_license(meta.license_code, xml_lic)
        if agrees is False:
            self.disagree.inc()
        if self.licenses is not None and lic.name not in self.licenses:
            yield _version_row(meta, self.snapshot, "license_filtered", license_xml=xml_lic.name,
                               license_agrees=agrees, detail=f"{lic.name} not in --license")
            return
        a.license, a.license_url, a.commercial = lic.name, lic.url, lic.commercial
        a.pmcid = meta.entry.pmcid
        a.pmid = a.pmid or meta.pmid
        a.doi = a.doi or meta.doi
        a.pmcid_version, a.version = key, meta.entry.version
        a.is_manuscript, a.is_retracted = meta.is_manuscript, meta.is_retracted
        a.license_code, a.source_md5, a.snapshot = meta.license_code, meta.md5, self.snapshot
        Metrics.counter(STAGE, "articles").inc()
        Metrics.counter(STAGE, "paragraphs").inc(len(p.paragraphs))
        yield beam.pvalue.TaggedOutput(OUT_ARTICLES, as_row(a))
        for para in p.paragraphs:
            if para.article_id != a.pmcid:
                para.article_id = a.pmcid
                para.id = f"{a.pmcid}/{para.path}"
            yield beam.pvalue.TaggedOutput(OUT_PARAGRAPHS, as_row(para))
        yield _version_row(meta, self.snapshot, "parsed", license_xml=xml_lic.name, license_agrees=agrees)


class ReadPmcCloud(beam.PTransform):
    """A PMC Cloud layout -> {"articles", "paragraphs", "rejects", "versions"} PCollections of rows."""

    def __init__(self, index: pc.Index, argv: list[str], *, min_tokens: int, max_bytes: int,
                 keep_retracted: bool = False, include_manuscripts: bool = False,
                 licenses: frozenset[str] | None = None, pmcids: pc.PmcidFilter | None = None,
                 fetch_concurrency: int = DEFAULT_FETCH_CONCURRENCY) -> None:
        super().__init__()
        self.index = index
        self.fetch_concurrency = fetch_concurrency
        self.argv = list(argv)
        self.min_tokens, self.max_bytes = min_tokens, max_bytes
        self.keep_retracted, self.include_manuscripts = keep_retracted, include_manuscripts
        self.licenses, self.pmcids = licenses, pmcids

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        ix, root, snap = self.index, self.index.root, self.index.snapshot
        keep = self.pmcids
        if ix.parts:
            parts = (pbegin | "ListParts" >> beam.Create(list(ix.parts)) | "SpreadParts" >> beam.Reshuffle()
                     | "ReadParts" >> beam.ParDo(ReadInventoryPart(root, self.argv, ix.columns))
                     .with_outputs(OUT_REJECTS, main="entries"))
            entries, part_rejects = parts.entries, parts[OUT_REJECTS]
        else:
            entries = pbegin | "ListVersions" >> beam.Create(list(ix.entries))
            part_rejects = pbegin | "NoPartRejects" >> beam.Create([])
        if keep is not None:
            entries = entries | "SelectPmcids" >> beam.Filter(lambda e, k=keep: k(e.pmcid))
        metas = (entries | "SpreadVersions" >> beam.Reshuffle()
                 | "FetchMetadata" >> beam.ParDo(FetchMetadata(root, self.argv, snap, self.fetch_concurrency))
                 .with_outputs(OUT_REJECTS, OUT_VERSIONS, main="metas"))
        chosen = (metas.metas | "GroupByPmcid" >> beam.GroupByKey()
                  | "ChooseVersion" >> beam.ParDo(ChooseVersion(snap, self.keep_retracted, self.include_manuscripts,
                                                                self.licenses, root))
                  .with_outputs(OUT_REJECTS, OUT_VERSIONS, main="chosen"))
        xml = (chosen.chosen | "SpreadChosen" >> beam.Reshuffle()
               | "FetchXml" >> beam.ParDo(FetchXml(root, self.argv, snap, self.max_bytes, self.fetch_concurrency))
               .with_outputs(OUT_REJECTS, OUT_VERSIONS, main="docs"))
        parsed = (xml.docs | "ParseVersion" >> beam.ParDo(
            ParseVersion(snap, self.min_tokens, self.max_bytes, self.keep_retracted, self.licenses))
            .with_outputs(OUT_ARTICLES, OUT_PARAGRAPHS, OUT_REJECTS, OUT_VERSIONS))
        rejects = ((part_rejects, metas[OUT_REJECTS], chosen[OUT_REJECTS], xml[OUT_REJECTS], parsed[OUT_REJECTS])
                   | "CloudRejects" >> beam.Flatten())
        versions = ((metas[OUT_VERSIONS], chosen[OUT_VERSIONS], xml[OUT_VERSIONS], parsed[OUT_VERSIONS])
                    | "CloudVersions" >> beam.Flatten())
        return {OUT_ARTICLES: parsed[OUT_ARTICLES], OUT_PARAGRAPHS: parsed[OUT_PARAGRAPHS],
                OUT_REJECTS: rejects, OUT_VERSIONS: versions}


def summarize_versions(con: Any, workdir: Any) -> dict[str, Any]:
    """Outcomes per version, JSON/XML license disagreements and the snapshot, from W/versions (empty: {})."""
    if not workdir.table(OUT_VERSIONS).glob("*.parquet"):
        return {}
    g = workdir.glob(OUT_VERSIONS)

    def one(sql: str) -> Any:
        return con.sql(sql, params={"g": g}).fetchall()[0][0]

    outcomes = con.sql("SELECT outcome, count(*) FROM read_parquet($g) GROUP BY 1 ORDER BY 2 DESC, 1", params={"g": g})
    return {"versions": dict(outcomes.fetchall()),
            "license_disagreements": one("SELECT count(*) FROM read_parquet($g) WHERE license_agrees = false"),
            "snapshot": one("SELECT max(snapshot) FROM read_parquet($g)")}
