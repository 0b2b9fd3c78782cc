"""Legacy PMC-OA file lists (`<package>.filelist.csv` beside a bulk `.tar.gz`): License and Retracted per article.

    Article File,Article Citation,AccessionID,LastUpdated (YYYY-MM-DD HH:MM:SS),PMID,License,Retracted

Pure: no Beam. The parse stage reads the lists beside its packages when it starts and joins them to
the articles by PMCID (AccessionID); the newest LastUpdated wins when several lists name one article.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.core.errors import ConfigError
from pipeline.core.records import Article
from pipeline.core.storage import Location
from pipeline.jats.license import License, resolve_license

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_PACKAGE = re.compile(r"\.(baseline|incr)\.(\d{4})-(\d{2})-(\d{2})\.(?:tar\.gz|tgz|tar)!", re.I)


def merge_order(source: str) -> tuple[int, int, str]:
    """Sort key among copies of one article: the newest NCBI package first (`....incr.2024-01-05.tar.gz`
    beats `....baseline.2023-12-18.tar.gz`, an incremental beats the baseline of its day), then any
    other input by smallest source path. So baseline and incremental packages merge last-wins."""
    m = _PACKAGE.search(source)
    if not m:
        return (0, 1, source)
    return (-int(m.group(2) + m.group(3) + m.group(4)), 0 if m.group(1).lower() == "incr" else 1, source)


@dataclass(frozen=True)
class FileListRow:
    pmcid: str
    license_code: str | None
    retracted: bool | None
    last_updated: str | None
    source: str


def filelist_for(package: str) -> Location | None:
    """The `.filelist.csv` beside a package (`x.baseline.2023-12-18.tar.gz` -> `x.baseline.2023-12-18.filelist.csv`)."""
    low = package.lower()
    for suf in ARCHIVE_SUFFIXES:
        if low.endswith(suf):
            loc = Location(package[: -len(suf)] + ".filelist.csv")
            return loc if loc.exists() else None
    return None


def _col(header: list[str], *names: str) -> int | None:
    norm = [h.strip().lower().replace(" ", "") for h in header]
    for n in names:
        key = n.lower().replace(" ", "")
        for i, h in enumerate(norm):
            if h == key or h.startswith(key):
                return i
    return None


def read_filelist(text: str, source: str = "") -> list[FileListRow]:
    """A file list's rows (header required: AccessionID, and License / Retracted when present)."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return []
    header = rows[0]
    ia = _col(header, "AccessionID", "Accession ID")
    if ia is None:
        raise ConfigError(f"{source}: a file list needs an AccessionID column; header is {header}")
    il, ir, iu = _col(header, "License"), _col(header, "Retracted"), _col(header, "LastUpdated", "Last Updated")
    out: list[FileListRow] = []
    for r in rows[1:]:
        if len(r) <= ia or not r[ia].strip():
            continue
        acc = r[ia].strip()
        digits = acc[3:] if acc.upper().startswith("PMC") else acc
        if not digits.isdigit():
            continue
        lic = r[il].strip() if il is not None and il < len(r) and r[il].strip() else None
        ret = None
        if ir is not None and ir < len(r) and r[ir].strip():
            ret = r[ir].strip().lower() in ("yes", "y", "true", "1")
        upd = r[iu].strip() if iu is not None and iu < len(r) else None
        out.append(FileListRow(f"PMC{int(digits)}", lic, ret, upd, source))
    return out


def join_filelists(packages: Iterable[str]) -> dict[str, FileListRow]:
    """PMCID -> its file-list row, from the lists beside the given packages (newest LastUpdated wins)."""
    joined: dict[str, FileListRow] = {}
    for pkg in packages:
        loc = filelist_for(pkg)
        if loc is None:
            continue
        for row in read_filelist(loc.read_text(), str(loc)):
            old = joined.get(row.pmcid)
            if old is None or (row.last_updated or "") >= (old.last_updated or ""):
                joined[row.pmcid] = row
    return joined


def apply_filelist(article: Article, row: FileListRow | None, keep_retracted: bool) -> str | None:
    """Join a file-list row to its article (license code first in the resolution, Retracted flag).
    Returns the reject detail when the article is retracted and not kept, else None."""
    if row is None:
        return None
    article.license_code, article.is_retracted = row.license_code, row.retracted
    lic, _ = resolve_license(row.license_code, License(article.license, article.license_url, article.commercial))
    article.license, article.license_url, article.commercial = lic.name, lic.url, lic.commercial
    if row.retracted and not keep_retracted:
        return f"{article.pmcid} is retracted ({row.source}); --keep-retracted keeps it"
    return None
