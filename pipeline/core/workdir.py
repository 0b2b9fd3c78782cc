"""The layout of a work directory: one folder per table, each table's row type, and the other folders.

    W/<table>/*.parquet     one folder per table of TABLES below; the stage registry
                            (pipeline/stages/__init__.py) says which stage writes each
    W/rejects/<stage>-*.parquet   every stage writes its own rejects (a re-run replaces only its own)
    W/cache/                annotate's checkpoints of finished LLM calls; local caches of a local W
    W/model/                train: a standard Hugging Face directory + label schema + metrics
    W/subsets/<name>/       curate
    W/exports/<name>/<fmt>/ export: tokenized shards of a subset
    W/reports/              evaluate, report, annotate --gold/--compare, import-labels
    W/_stages/<step>.json   markers: what each step read, how it was configured, what it wrote

W is a local path, `s3://bucket/prefix` or `gs://bucket/prefix`; every location below is a
`pipeline.core.storage.Location`, so stages never branch on where the work directory lives.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.core import records
from pipeline.core.storage import Location, as_location, replacing


@dataclass(frozen=True)
class Table:
    """A folder of Parquet files in W whose rows are one record type."""

    name: str
    record: type
    description: str


TABLES: tuple[Table, ...] = (
    Table("articles", records.Article, "one row per article: metadata, license, version"),
    Table("paragraphs", records.Paragraph, "one row per body paragraph, addressed by its path"),
    Table("versions", records.SourceVersion, "what became of each article version the PMC Cloud index named"),
    Table("tombstones", records.Tombstone, "articles an --update took out, and why"),
    Table("rejects", records.Reject, "every input or record that did not make it, with its reason (all stages)"),
    Table("sample", records.SampledParagraph, "the paragraphs picked for the teacher"),
    Table("annotations", records.Annotation, "the teacher's labels of the sample"),
    Table("labels", records.Label, "the student's labels of every paragraph"),
    Table("labels_imported", records.Label, "published Biomed-Enriched labels joined to our paragraphs"),
    Table("duplicates", records.Duplicate, "paragraphs with exact or near copies, boilerplate, articles published twice"),
    Table("contamination", records.Contamination, "paragraphs overlapping a benchmark item, and by which rule"),
)
TABLE_NAMES: tuple[str, ...] = tuple(t.name for t in TABLES)


@dataclass(frozen=True)
class Workdir:
    """Locations inside a work directory (local or on an object store).

    `outputs`: tables written elsewhere than W/<table> (the new folders of `rewriting`)."""

    root: Location
    outputs: tuple[tuple[str, Location], ...] = ()

    @classmethod
    def of(cls, path: str | os.PathLike[str] | Location) -> Workdir:
        return cls(as_location(path))

    @property
    def is_remote(self) -> bool:
        return self.root.is_remote

    def table(self, name: str) -> Location:
        return next((loc for n, loc in self.outputs if n == name), None) or self.root / name

    @property
    def articles(self) -> Location:
        return self.table("articles")

    @property
    def paragraphs(self) -> Location:
        return self.table("paragraphs")

    @property
    def rejects(self) -> Location:
        return self.table("rejects")

    @property
    def sample(self) -> Location:
        return self.table("sample")

    @property
    def annotations(self) -> Location:
        return self.table("annotations")

    @property
    def cache(self) -> Location:
        return self.root / "cache"

    @property
    def model(self) -> Location:
        return self.root / "model"

    @property
    def labels(self) -> Location:
        return self.table("labels")

    @property
    def subsets(self) -> Location:
        return self.root / "subsets"

    @property
    def reports(self) -> Location:
        return self.root / "reports"

    @property
    def stages(self) -> Location:
        return self.root / "_stages"

    def state(self, stage: str) -> Location:
        """A stage's own record of its last run (`W/_stages/state/<stage>.json`), apart from the flow's marker
        `W/_stages/<step>.json`, which the flow rewrites around the stage."""
        return self.stages / "state" / f"{stage}.json"

    @property
    def local_cache(self) -> Path:
        """A local folder for this work directory's machine-local state (SQLite call cache, DuckDB spill
        files, logs): `W/cache/` for a local W, a per-workdir folder under the system's temporary
        directory (or $PMC_CURATE_LOCAL_CACHE) for a remote one."""
        if not self.is_remote:
            return self.cache.local
        base = Path(os.environ.get("PMC_CURATE_LOCAL_CACHE") or Path(tempfile.gettempdir()) / "pmc-curate")
        slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(self.root).replace("://", "_"))
        return base / slug

    def glob(self, name: str) -> str:
        """Glob of a table's Parquet files, as DuckDB (through `storage.duckdb_connect`) and Polars accept it."""
        return str(self.table(name) / "*.parquet")

    def files(self, name: str, pattern: str = "*.parquet") -> list[Location]:
        return self.table(name).glob(pattern)

    def has_table(self, name: str) -> bool:
        return bool(self.files(name))

    def reset_table(self, name: str, prefix: str = "") -> Location:
        """Empty a table's folder (only its files starting with `prefix` when given), e.g. to build a test
        fixture. Not atomic: stages replace their tables through `rewriting`."""
        d = self.table(name)
        if prefix:
            for f in d.glob(f"{prefix}*"):
                f.unlink()
        else:
            d.rmtree()
        d.mkdir()
        return d

    @contextlib.contextmanager
    def rewriting(self, names: tuple[str, ...], rejects_prefix: str = "") -> Iterator[Workdir]:
        """This work directory with the tables `names` written into new folders, which replace the old
        tables (each one whole: storage.publish) in the order given when the block ends without error.
        An error or a kill in the block leaves the old tables as they were. W/rejects is shared: only its
        files starting with `rejects_prefix` (the writer's) are replaced."""
        if "rejects" in names and not rejects_prefix:
            raise ValueError("rewriting W/rejects needs the writer's file prefix")
        finals = [self.root / n for n in names]
        with replacing(finals, [rejects_prefix if n == "rejects" else "" for n in names]) as new:
            yield replace(self, outputs=(*self.outputs, *zip(names, new, strict=True)))
