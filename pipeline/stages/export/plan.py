"""What the driver decides before any token is counted: the subset is current, and which documents each
worker task writes.

A *component* is the set of documents the recipe repeats the same number of times (`x1`, `x10`, ...):
each is written once, and its repeat becomes its weight in the mixture. A component's documents, in
the subset's order, are cut into chunks of `chunk_documents`; one worker task tokenizes and writes one
chunk into shards named `<component>-<chunk>-<n>`. Chunks depend on the subset and the flags only, so
the shards are byte-identical whatever the runner and however many workers it has.

The driver reads only ids (never text): `(paragraph id -> component, chunk, document, position)`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pipeline.core import storage, tables
from pipeline.core.errors import ConfigError
from pipeline.core.storage import Location
from pipeline.core.workdir import Workdir

# paragraph id -> (component, chunk, document position in the chunk, paragraph position in the document, doc id,
# the component's repeat)
Assignment = tuple[str, tuple[str, int, int, int, str, int]]

# The subset's rows hold every copy (`copy` 0 .. repeat - 1); copy 0 is where the paragraph stands in the order.
_ORDERED = """WITH rows AS (SELECT paragraph_id AS id, pmcid AS article_id, copy, filename, file_row_number
                           FROM read_parquet($files, filename = true, file_row_number = true))
              SELECT z.id, z.article_id, n.repeat
              FROM (SELECT * FROM rows WHERE copy = 0) AS z
              JOIN (SELECT id, max(copy) + 1 AS repeat FROM rows GROUP BY id) AS n USING (id)
              ORDER BY z.filename, z.file_row_number"""


@dataclass
class Component:
    name: str
    repeat: int
    doc_ids: list[str] = field(default_factory=list)
    paragraphs: list[list[str]] = field(default_factory=list)  # paragraph ids of each document, in order


@dataclass
class Plan:
    subset: str
    subset_dir: Location
    subset_manifest: dict[str, Any]
    data_files: list[Location]
    components: list[Component]

    @property
    def documents(self) -> int:
        return sum(len(c.doc_ids) for c in self.components)

    def assignments(self, chunk_documents: int) -> Iterator[Assignment]:
        for c in self.components:
            for d, (doc_id, paras) in enumerate(zip(c.doc_ids, c.paragraphs, strict=True)):
                chunk, pos = divmod(d, chunk_documents)
                for i, pid in enumerate(paras):
                    yield pid, (c.name, chunk, pos, i, doc_id, c.repeat)


SEPARATOR = "\n\n"  # between an article's pieces, as in curate's JSONL documents


def article_text(pieces: list[tuple[str | None, str]]) -> str:
    """An article document from its (section_title, text) rows in order, as curate's JSONL export builds it:
    the last part of the section title before the first paragraph of each new section, then the paragraphs."""
    out: list[str] = []
    prev: str | None = None
    for i, (title, text) in enumerate(pieces):
        if title and (i == 0 or title != prev):
            out.append(title.split(" > ")[-1] + SEPARATOR + text)
        else:
            out.append(text)
        prev = title
    return SEPARATOR.join(out)


def component_name(repeat: int) -> str:
    return f"x{repeat}"


def subset_manifest(wd: Workdir, subset: str) -> tuple[Location, dict[str, Any]]:
    """The subset's folder and manifest.json; ConfigError naming the subsets there are when it is missing."""
    if not subset:
        raise ConfigError("export needs --subset NAME (a folder of W/subsets written by curate)")
    folder = wd.subsets / subset
    path = folder / "manifest.json"
    if not path.is_file():
        have = sorted(p.name for p in wd.subsets.iterdir() if (p / "manifest.json").is_file()) if wd.subsets.is_dir() else []
        raise ConfigError(f"no subset {subset!r} in {wd.subsets} (subsets: {', '.join(have) or 'none'}; run curate first)")
    return folder, json.loads(path.read_text())


def check_current(wd: Workdir, subset: str, manifest: dict[str, Any]) -> None:
    """Refuse a subset whose input tables changed since curate built it, naming each stale table."""
    stale = []
    for table, recorded in (manifest.get("inputs") or {}).items():
        now = storage.fingerprint(wd.files(table), wd.table(table))
        if now["digest"] != recorded.get("digest"):
            stale.append(f"{table} ({recorded.get('files')} files, {recorded.get('bytes')} bytes at curate; "
                         f"{now['files']} files, {now['bytes']} bytes now)")  # fmt: skip
    if stale:
        raise ConfigError(
            f"subset {subset!r} is stale: {'; '.join(stale)} changed since curate built it; re-run "
            f"`pmc-curate curate` for it before exporting"
        )


def build(wd: Workdir, subset: str, unit: str) -> Plan:
    """The subset's documents by component, in the subset's order (ids only)."""
    folder, manifest = subset_manifest(wd, subset)
    check_current(wd, subset, manifest)
    files = sorted((folder / "data").glob("*.parquet"))
    if not files:
        raise ConfigError(f"subset {subset!r} has no data files in {folder / 'data'}; re-run curate")
    rows = tables.rows(_ORDERED, files)
    if not rows:
        raise ConfigError(f"subset {subset!r} is empty: its recipe selected no paragraph, nothing to export")
    by_repeat: dict[int, Component] = {}
    if unit == "paragraph":
        for pid, _aid, rep in rows:
            c = by_repeat.setdefault(int(rep), Component(component_name(int(rep)), int(rep)))
            c.doc_ids.append(pid)
            c.paragraphs.append([pid])
    else:  # whole articles: an article's paragraphs are consecutive in the subset; its repeat is its largest
        articles: dict[str, tuple[int, list[str]]] = {}
        for pid, aid, rep in rows:
            r, paras = articles.setdefault(aid, (int(rep), []))
            paras.append(pid)
            articles[aid] = (max(r, int(rep)), paras)
        for aid, (rep, paras) in articles.items():
            c = by_repeat.setdefault(rep, Component(component_name(rep), rep))
            c.doc_ids.append(aid)
            c.paragraphs.append(paras)
    components = [by_repeat[r] for r in sorted(by_repeat)]
    return Plan(subset, folder, manifest, files, components)
