"""The PMC Cloud Service layout (s3://pmc-oa-opendata since 2026, and any mirror of it): pure parts, no Beam.

    <root>/PMC<id>.<v>/PMC<id>.<v>.xml, .json, .txt, .pdf ...   one prefix per article version
    <root>/metadata/PMC<id>.<v>.json                              a copy of each version's JSON
    <root>/inventory-reports/<bucket>/metadata/<YYYY-MM-DD>T01-00Z/manifest.json   daily S3 Inventory
        files[].key -> csv.gz parts of header-less rows "bucket","metadata/PMC..json","last-modified","etag"

The index of versions is the newest inventory (or a chosen manifest); a mirror without one is listed.
Every location is a `pipeline.storage.Location`, so this works on local folders, gs:// and s3://
(the public bucket anonymously: see `storage.is_anonymous`).
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import io
import json
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from pipeline.core.errors import ConfigError, RecordError, RejectReason
from pipeline.core.storage import Location
from pipeline.jats.license import COMMERCIAL, from_code

VERSION_NAME = re.compile(r"^PMC(\d+)\.(\d+)$")
_META_KEY = re.compile(r"(?:^|/)PMC(\d+)\.(\d+)\.json$")
_MANIFEST_GLOB = "inventory-reports/*/metadata/*/manifest.json"
_SNAPSHOT = re.compile(r"^(\d{4}-\d{2}-\d{2})")
DEFAULT_SCHEMA = ("Bucket", "Key", "LastModifiedDate", "ETag")
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True, slots=True)
class Entry:
    """One article version named by the index (an inventory row or a listed prefix)."""

    key: str  # "PMC123.2"
    pmcid: str  # "PMC123"
    version: int
    json_key: str  # the JSON's key relative to the layout's root
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class VersionMeta:
    """A version's JSON (the fields the parse uses) and its index entry."""

    entry: Entry
    is_open_access: bool
    is_manuscript: bool
    is_retracted: bool
    license_code: str | None
    xml_url: str | None
    pmid: str | None = None
    doi: str | None = None

    @property
    def md5(self) -> str | None:
        return md5_of_url(self.xml_url)


@dataclass(frozen=True)
class Index:
    """Where the versions come from: inventory parts to read, or entries already listed."""

    root: str
    snapshot: str
    parts: tuple[str, ...] = ()  # csv.gz keys relative to the root (inventory)
    columns: tuple[str, ...] = DEFAULT_SCHEMA
    entries: tuple[Entry, ...] = ()  # listing fallback
    manifest: str | None = None


# --------------------------------------------------------------------------------------- detection


def entry_from_key(key: str, etag: str | None = None, last_modified: str | None = None) -> Entry | None:
    """`metadata/PMC123.2.json` (or `PMC123.2/PMC123.2.json`) -> Entry; None for any other key."""
    m = _META_KEY.search(key)
    if not m:
        return None
    pmcid, version = f"PMC{int(m.group(1))}", int(m.group(2))
    return Entry(f"{pmcid}.{version}", pmcid, version, key, etag.strip('"') if etag else None, last_modified)


def find_manifests(root: Location) -> list[Location]:
    """Inventory manifests under the root, oldest first (their folders are named by date)."""
    return sorted(root.glob(_MANIFEST_GLOB), key=lambda m: m.parent.name)


def _version_children(root: Location, limit: int | None = None) -> list[str]:
    """Names of the root's `PMC<id>.<v>` children (the listing fallback; one page at a time remotely)."""
    if not root.is_remote:
        p = Path(str(root))
        if not p.is_dir():
            return []
        return sorted(e.name for e in p.iterdir() if e.is_dir() and VERSION_NAME.match(e.name))[:limit]
    return list(_remote_version_children(str(root)))[:limit]


@functools.lru_cache(maxsize=8)
def _remote_version_children(root: str) -> tuple[str, ...]:
    """One listing of a remote root per process (detection and the index share it: 8M prefixes are slow)."""
    return tuple(sorted(n for c in Location(root).iterdir() if VERSION_NAME.match(n := c.name)))


def is_cloud_layout(spec: str) -> bool:
    """True when `spec` is the root of a PMC Cloud layout: it has an inventory or `PMC<id>.<v>/` prefixes."""
    if _GLOB_CHARS & set(spec) or spec.lower().endswith((".xml", ".nxml", ".tar.gz", ".tgz", ".tar", ".json")):
        return False
    root = Location(spec.rstrip("/") or spec)
    try:
        if not root.is_remote and not Path(str(root)).is_dir():
            return False
        return bool(find_manifests(root)) or bool(_version_children(root, limit=1))
    except FileNotFoundError:
        return False


# ------------------------------------------------------------------------------------------- index


def open_index(spec: str, inventory: str | None = None, now: datetime | None = None) -> Index:
    """The index of a layout: the chosen manifest, else the newest one, else a listing of the prefixes."""
    root = Location(spec.rstrip("/") or spec)
    if inventory:
        man = Location(inventory) if "://" in inventory or Path(inventory).is_absolute() else root / inventory
        if not man.exists():
            raise ConfigError(f"--inventory {inventory}: no such manifest")
        return read_manifest(root, man)
    manifests = find_manifests(root)
    if manifests:
        return read_manifest(root, manifests[-1])
    names = _version_children(root)
    _remote_version_children.cache_clear()  # the next run lists afresh
    if not names:
        raise ConfigError(f"{spec}: no inventory and no PMC<id>.<v>/ prefixes: not a PMC Cloud layout")
    snapshot = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    entries = tuple(e for n in names if (e := entry_from_key(f"{n}/{n}.json")))
    return Index(str(root), snapshot, entries=entries)


def read_manifest(root: Location, manifest: Location) -> Index:
    """An S3 Inventory manifest -> its parts, column order and date (the snapshot)."""
    try:
        doc = json.loads(manifest.read_bytes())
        keys = tuple(str(f["key"]) for f in doc["files"])
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{manifest}: not an S3 Inventory manifest ({type(e).__name__}: {e})") from e
    columns = tuple(c.strip() for c in str(doc.get("fileSchema") or ",".join(DEFAULT_SCHEMA)).split(","))
    if "Key" not in columns:
        raise ConfigError(f"{manifest}: fileSchema {doc.get('fileSchema')!r} has no Key column")
    folder = manifest.parent.name
    m = _SNAPSHOT.match(folder)
    snapshot = m.group(1) if m else str(doc.get("creationTimestamp") or folder)
    return Index(str(root), snapshot, parts=keys, columns=columns, manifest=str(manifest))


def read_part(data: bytes, columns: Iterable[str] = DEFAULT_SCHEMA) -> list[Entry]:
    """A csv.gz inventory part (bytes) -> the versions its metadata/ rows name. RecordError when corrupt."""
    return list(iter_part(io.BytesIO(data), columns))


def iter_part(stream: IO[bytes], columns: Iterable[str] = DEFAULT_SCHEMA) -> Iterator[Entry]:
    """Stream a csv.gz inventory part: the versions its `metadata/` rows name, one at a time (memory stays
    flat whatever the part's size). RecordError(CORRUPT_INVENTORY) where it cannot be read, after
    yielding the rows read intact before the damage."""
    cols = list(columns)
    ik = cols.index("Key")
    ie = cols.index("ETag") if "ETag" in cols else None
    im = cols.index("LastModifiedDate") if "LastModifiedDate" in cols else None
    n = 0
    try:
        with gzip.GzipFile(fileobj=stream) as gz:
            for row in csv.reader(io.TextIOWrapper(gz, encoding="utf-8", newline="")):
                n += 1
                if len(row) <= ik:
                    continue
                key = unquote(row[ik])  # S3 Inventory URL-encodes keys
                if not key.startswith("metadata/"):
                    continue
                e = entry_from_key(key, row[ie] if ie is not None and ie < len(row) else None,
                                   row[im] if im is not None and im < len(row) else None)
                if e is not None:
                    yield e
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error) as e:
        raise RecordError(RejectReason.CORRUPT_INVENTORY,
                          f"after {n} rows read intact: {type(e).__name__}: {e}"[:300]) from e


# ---------------------------------------------------------------------------------------- metadata


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "y")
    return bool(value)


def parse_metadata(data: bytes, entry: Entry) -> VersionMeta:
    """A version's JSON -> VersionMeta. RecordError(BAD_METADATA) when it is not JSON or names another version."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise RecordError(RejectReason.BAD_METADATA, f"not JSON: {e}"[:300]) from e
    if not isinstance(doc, dict):
        raise RecordError(RejectReason.BAD_METADATA, f"a JSON {type(doc).__name__}, not an object")
    pmcid = str(doc.get("pmcid") or entry.pmcid)
    if not pmcid.upper().startswith("PMC"):
        pmcid = f"PMC{pmcid}"
    version = doc.get("version", entry.version)
    try:
        same = f"PMC{int(pmcid[3:])}" == entry.pmcid and int(version) == entry.version
    except (TypeError, ValueError):
        same = False
    if not same:
        raise RecordError(RejectReason.BAD_METADATA, f"the JSON is for {pmcid}.{version}, its key for {entry.key}")
    pmid = doc.get("pmid")
    return VersionMeta(
        entry=entry,
        is_open_access=_flag(doc.get("is_pmc_openaccess", True)),
        is_manuscript=_flag(doc.get("is_manuscript", False)),
        is_retracted=_flag(doc.get("is_retracted", False)),
        license_code=(str(doc["license_code"]).strip() or None) if doc.get("license_code") else None,
        xml_url=doc.get("xml_url") or None,
        pmid=str(pmid) if pmid not in (None, "") else None,
        doi=doc.get("doi") or None,
    )


def md5_of_url(url: str | None) -> str | None:
    """`s3://bucket/PMC1.1/PMC1.1.xml?md5=abc` -> "abc"."""
    if not url or "?" not in url:
        return None
    for part in url.split("?", 1)[1].split("&"):
        k, _, v = part.partition("=")
        if k == "md5" and v:
            return v.lower()
    return None


def xml_key(meta: VersionMeta) -> str:
    """The XML's key relative to the root: the path of the JSON's xml_url (any bucket: mirrors keep keys)."""
    if meta.xml_url:
        path = urlsplit(meta.xml_url).path.lstrip("/")
        if path:
            return path
    k = meta.entry.key
    return f"{k}/{k}.xml"


def check_md5(data: bytes, meta: VersionMeta) -> None:
    """RecordError(MD5_MISMATCH) when the XML's MD5 differs from its JSON's."""
    want = meta.md5
    if want and hashlib.md5(data).hexdigest() != want:
        raise RecordError(RejectReason.MD5_MISMATCH,
                          f"MD5 {hashlib.md5(data).hexdigest()}, the JSON's xml_url says {want}")


# ----------------------------------------------------------------------------------------- choices


@dataclass(frozen=True)
class Choice:
    """What becomes of one PMCID's versions: the one to parse (or none) and each other's outcome."""

    chosen: VersionMeta | None
    outcomes: list[tuple[VersionMeta, str, RejectReason | None, str]]  # (version, outcome, reject reason, detail)


def choose_version(versions: Iterable[VersionMeta], keep_retracted: bool = False) -> Choice:
    """One canonical version per PMCID: the newest open-access version, unless it is retracted.

    A retraction applies to the article: when the newest open-access version is retracted, no older
    version stands in for it (reject RETRACTED; kept, flagged, with keep_retracted). Older versions
    are `superseded`; newer ones that are not open access are `not_open_access` (counted, no reject)
    unless no version is open access (one NOT_OPEN_ACCESS reject, on the newest).
    """
    vs = sorted(versions, key=lambda v: v.entry.version, reverse=True)
    oa = [v for v in vs if v.is_open_access]
    if not oa:
        out = [(vs[0], "not_open_access", RejectReason.NOT_OPEN_ACCESS,
                f"no open-access version among {len(vs)}")]
        out += [(v, "superseded", None, f"older than {vs[0].entry.key}") for v in vs[1:]]
        return Choice(None, out)
    best = oa[0]
    outcomes: list[tuple[VersionMeta, str, RejectReason | None, str]] = []
    for v in vs:
        if v is best:
            continue
        if v.entry.version > best.entry.version:
            outcomes.append((v, "not_open_access", None, f"not open access; {best.entry.key} is parsed"))
        else:
            outcomes.append((v, "superseded", None, f"older than {best.entry.key}"))
    if best.is_retracted and not keep_retracted:
        outcomes.insert(0, (best, "retracted", RejectReason.RETRACTED,
                            f"{best.entry.key} is retracted (is_retracted in its JSON); --keep-retracted keeps it"))
        return Choice(None, outcomes)
    return Choice(best, outcomes)


# ----------------------------------------------------------------------------------------- filters

LICENSE_GROUPS: dict[str, frozenset[str]] = {
    "commercial": COMMERCIAL,
    "noncommercial": frozenset({"CC BY-NC", "CC BY-NC-SA", "CC BY-NC-ND"}),
    "cc": frozenset({"CC0", "CC BY", "CC BY-SA", "CC BY-ND", "CC BY-NC", "CC BY-NC-SA", "CC BY-NC-ND"}),
    "tdm": frozenset({"other"}),
    "other": frozenset({"other"}),
    "none": frozenset({"none"}),
}


def license_filter(spec: str | None) -> frozenset[str] | None:
    """`--license "CC BY,CC BY-SA"` or `--license commercial` (groups: commercial, noncommercial, cc, tdm,
    other, none) -> the set of normalised names kept; None keeps everything."""
    if not spec:
        return None
    names: set[str] = set()
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        group = LICENSE_GROUPS.get(item.lower().replace("-", "").replace("_", "").replace(" ", ""))
        if group is not None:
            names |= group
            continue
        name = from_code(item) or (item if item in ("public domain", "CC0") else None)
        if name is None:
            raise ConfigError(f"--license {item!r}: not a license code (CC BY, CC BY-NC-ND, CC0, TDM ...) "
                              f"nor a group ({', '.join(LICENSE_GROUPS)})")
        names.add(name)
    return frozenset(names)


_RANGE = re.compile(r"^\s*(?:PMC)?(\d+)\s*(?:-|\.\.|:)\s*(?:PMC)?(\d+)\s*$", re.I)


@dataclass(frozen=True)
class PmcidFilter:
    """`--pmcids FILE` (one PMCID a line) or `--pmcids PMC100-PMC200` (inclusive range)."""

    ids: frozenset[str] | None = None
    low: int | None = None
    high: int | None = None

    def __call__(self, pmcid: str) -> bool:
        if self.ids is not None:
            return pmcid in self.ids
        n = int(pmcid[3:])
        return (self.low is None or n >= self.low) and (self.high is None or n <= self.high)


def pmcid_filter(spec: str | None) -> PmcidFilter | None:
    if not spec:
        return None
    m = _RANGE.match(spec)
    if m and not Path(spec).exists():
        lo, hi = int(m.group(1)), int(m.group(2))
        if lo > hi:
            raise ConfigError(f"--pmcids {spec}: empty range")
        return PmcidFilter(low=lo, high=hi)
    loc = Location(spec)
    if not loc.exists():
        raise ConfigError(f"--pmcids {spec}: neither a file nor a range like PMC100-PMC200")
    ids = set()
    for line in loc.read_text().splitlines():
        t = line.strip().split(",")[0].strip()
        if t and not t.startswith("#"):
            digits = t[3:] if t.upper().startswith("PMC") else t
            if not digits.isdigit():
                raise ConfigError(f"--pmcids {spec}: {t!r} is not a PMCID")
            ids.add(f"PMC{int(digits)}")
    return PmcidFilter(ids=frozenset(ids))
