"""Beam's FileSystems, behind the storage layer: listing and opening input files, and Beam's settings.

Beam stages read their inputs through here (never through `apache_beam.io.filesystems` directly), so
the storage layer stays the only place that knows filesystems.

Beam's S3 filesystem always signs its requests (Beam 2.77 has no unsigned mode), so on a machine without
AWS credentials it cannot read `s3://pmc-oa-opendata` (e.g. the frozen bulk packages under
`deprecated/`). Public buckets (`storage.is_anonymous`) are listed and read through the storage layer
instead, with unsigned requests; everything else goes through Beam, with its `--s3_*` settings.
"""

from __future__ import annotations

import gzip
from typing import IO, Any

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.core.storage.location import Location, expand
from pipeline.core.storage.settings import is_anonymous


def use_pipeline_options(options: PipelineOptions) -> None:
    """Give this process's Beam filesystems the pipeline's settings (`--s3_*`), as its workers get them."""
    FileSystems.set_options(options)


def match_files(pattern: str) -> list[tuple[str, int]]:
    """(path, size in bytes) of each file a Beam match pattern (a file, a glob, `dir/**`) names."""
    if is_anonymous(pattern):
        return [(str(loc), int(loc.info()["size"])) for loc in expand(pattern)]
    return [(m.path, m.size_in_bytes) for m in FileSystems.match([pattern])[0].metadata_list]


def open_input(path: str, uncompressed: bool = False) -> IO[Any]:
    """A readable binary stream of one input file, a `.gz` one decompressed as it is read (`uncompressed`:
    the bytes as stored)."""
    if is_anonymous(path):
        raw = Location(path).open("rb")
        return raw if uncompressed or not path.lower().endswith(".gz") else gzip.GzipFile(fileobj=raw)
    if uncompressed:
        return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    return FileSystems.open(path)


def listing(prefix: str) -> list[tuple[str, int, str]]:
    """(path, size, version) of every file below a folder, with Beam's FileSystems (a worker's settings).

    The version is the file's checksum (ETag, crc32c) and modification time: S3 times have 1 s resolution."""
    base = prefix.rstrip("/") + "/"
    metas = [m for r in FileSystems.match([base + "**"]) for m in r.metadata_list]
    return sorted((m.path, int(m.size_in_bytes), f"{FileSystems.checksum(m.path)}@{m.last_updated_in_seconds}")
                  for m in metas)
