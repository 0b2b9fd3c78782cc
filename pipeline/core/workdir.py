"""The layout of a work directory: one folder per table, written by one stage each.

    W/articles/*.parquet      parse
    W/paragraphs/*.parquet    parse
    W/rejects/<stage>-*.parquet   every stage writes its own rejects (a re-run replaces only its own)
    W/sample/*.parquet        sample
    W/annotations/*.parquet   annotate      (W/cache/teacher/*.parquet: checkpoints of finished LLM calls)
    W/model/                  train         (a standard Hugging Face directory + label schema + metrics)
    W/labels/*.parquet        propagate
    W/subsets/<recipe>/       curate
    W/reports/                report
    W/_stages/<stage>.json    completion markers: what each stage read and wrote

W is a local path, `s3://bucket/prefix` or `gs://bucket/prefix`; every location below is a
`pipeline.storage.Location`, so stages never branch on where the work directory lives.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.storage import Location, as_location

TABLES = ("articles", "paragraphs", "rejects", "sample", "annotations", "labels", "labels_imported")


@dataclass(frozen=True)
class Workdir:
    """Locations inside a work directory (local or on an object store)."""

    root: Location

    @classmethod
    def of(cls, path: str | os.PathLike[str] | Location) -> Workdir:
        return cls(as_location(path))

    @property
    def is_remote(self) -> bool:
        return self.root.is_remote

    def table(self, name: str) -> Location:
        return self.root / name

    @property
    def articles(self) -> Location:
        return self.root / "articles"

    @property
    def paragraphs(self) -> Location:
        return self.root / "paragraphs"

    @property
    def rejects(self) -> Location:
        return self.root / "rejects"

    @property
    def sample(self) -> Location:
        return self.root / "sample"

    @property
    def annotations(self) -> Location:
        return self.root / "annotations"

    @property
    def cache(self) -> Location:
        return self.root / "cache"

    @property
    def model(self) -> Location:
        return self.root / "model"

    @property
    def labels(self) -> Location:
        return self.root / "labels"

    @property
    def subsets(self) -> Location:
        return self.root / "subsets"

    @property
    def reports(self) -> Location:
        return self.root / "reports"

    @property
    def stages(self) -> Location:
        return self.root / "_stages"

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
        """Remove a table's previous output (only files starting with `prefix` when given) before a re-run."""
        d = self.table(name)
        if prefix:
            for f in d.glob(f"{prefix}*"):
                f.unlink()
        else:
            d.rmtree()
        d.mkdir()
        return d
