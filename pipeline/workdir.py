"""The layout of a work directory: one folder per table, written by one stage each.

    W/articles/*.parquet      parse
    W/paragraphs/*.parquet    parse
    W/rejects/<stage>-*.parquet   every stage writes its own rejects (a re-run replaces only its own)
    W/sample/*.parquet        sample
    W/annotations/*.parquet   annotate      (W/cache/teacher.sqlite: every finished LLM call)
    W/model/                  train         (a standard Hugging Face directory + label schema + metrics)
    W/labels/*.parquet        propagate
    W/subsets/<recipe>/       curate
    W/reports/                report
    W/_stages/<stage>.json    completion markers: what each stage read and wrote
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

TABLES = ("articles", "paragraphs", "rejects", "sample", "annotations", "labels")


@dataclass(frozen=True)
class Workdir:
    """Paths inside a work directory. Local paths only for now; Beam sinks accept any filesystem."""

    root: Path

    @classmethod
    def of(cls, path: str | Path) -> Workdir:
        return cls(Path(path))

    def table(self, name: str) -> Path:
        return self.root / name

    @property
    def articles(self) -> Path:
        return self.root / "articles"

    @property
    def paragraphs(self) -> Path:
        return self.root / "paragraphs"

    @property
    def rejects(self) -> Path:
        return self.root / "rejects"

    @property
    def sample(self) -> Path:
        return self.root / "sample"

    @property
    def annotations(self) -> Path:
        return self.root / "annotations"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def labels(self) -> Path:
        return self.root / "labels"

    @property
    def subsets(self) -> Path:
        return self.root / "subsets"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def stages(self) -> Path:
        return self.root / "_stages"

    def glob(self, name: str) -> str:
        """Glob of a table's Parquet files, as DuckDB and Polars accept it."""
        return str(self.table(name) / "*.parquet")

    def has_table(self, name: str) -> bool:
        d = self.table(name)
        return d.is_dir() and any(d.glob("*.parquet"))

    def reset_table(self, name: str, prefix: str = "") -> Path:
        """Remove a table's previous output (only files starting with `prefix` when given) before a re-run."""
        d = self.table(name)
        if prefix:
            for f in d.glob(f"{prefix}*"):
                f.unlink()
        elif d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True, exist_ok=True)
        return d
