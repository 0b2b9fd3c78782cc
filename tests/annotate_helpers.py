"""Shared helpers for the annotate tests: a small sample table whose texts carry PKEY markers."""

from __future__ import annotations

import os

import pyarrow as pa

from pipeline.core.records import SampledParagraph, arrow_schema, as_row
from pipeline.core.storage import Location, write_parquet
from pipeline.core.workdir import Workdir


def make_sample(root: str | os.PathLike[str] | Location, keys: list[str], texts: dict[str, str] | None = None) -> Workdir:
    """W/sample (local, s3:// or gs://) with one paragraph per key; the fake server recognises a paragraph by `PKEY-<key>`."""
    wd = Workdir.of(root)
    rows = []
    for k in keys:
        text = (texts or {}).get(k, f"Paragraph PKEY-{k} about cardiomyocyte mitophagy and heart failure.")
        rows.append(SampledParagraph(
            id=f"PMC{k}/sec[0]/p[0]", article_id=f"PMC{k}", path="sec[0]/p[0]", title=f"Article {k}",
            article_type="research-article", language="en", section_title="Results", text=text, n_tokens=80,
            stratum="research", sample_key=k, seed=0, strategy="stratified",
        ))  # fmt: skip
    d = wd.reset_table("sample")
    write_parquet(pa.Table.from_pylist([as_row(r) for r in rows], schema=arrow_schema(SampledParagraph)), d / "part-0.parquet")
    return wd


def key_of(paragraph_id: str) -> str:
    """Inverse of make_sample's id scheme."""
    return paragraph_id.split("/", 1)[0][3:]
