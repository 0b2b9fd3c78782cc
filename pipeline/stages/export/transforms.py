"""The export's Beam graph: key the subset's rows by the plan's chunk, group by chunk, tokenize and write.

    subset data/*.parquet (copy 0) -> key by chunk (the plan, paragraph id -> chunk, is a side input)
        -> GroupByKey(component, chunk) -> TokenizeAndWrite: one writer per chunk, shards <out>/<component>/

The tokenizer is loaded once per worker process (`DoFn.setup`, cached per process by spec). A chunk's
paragraphs are put back in the plan's order before tokenizing, so what a worker writes never depends on
the order Beam delivers them in. Shards go straight into a local output folder; for an s3:// or gs://
one they are written into a local temporary folder and uploaded file by file, each whole.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from pipeline.core import storage
from pipeline.core.errors import ConfigError
from pipeline.core.logs import Heartbeat
from pipeline.shards import open_writer
from pipeline.stages.export import tokenizer as T
from pipeline.stages.export.config import ExportConfig
from pipeline.stages.export.plan import article_text

STAGE = "export"
METRICS_NAMESPACE = "pmc_curate_export"
log = logging.getLogger(__name__)


class TokenizeAndWrite(beam.DoFn):
    """((component, chunk), paragraphs) -> the chunk's shards written; yields their file names."""

    def __init__(self, config: ExportConfig, out: str, vocab_size: int, eos_id: int, source: str) -> None:
        self.config, self.out, self.vocab_size, self.eos_id, self.source = config, out, vocab_size, eos_id, source
        self.tok: Any = None

    def setup(self) -> None:
        self.tok, info = T.load(self.config.tokenizer, self.config.eos_token)
        if (info.vocab_size, info.eos_id) != (self.vocab_size, self.eos_id):
            raise ConfigError(f"tokenizer {self.config.tokenizer!r} on this worker is not the driver's "
                              f"(vocabulary {info.vocab_size} / EOS {info.eos_id})")  # fmt: skip
        self._docs = Metrics.counter(METRICS_NAMESPACE, "documents")
        self._tokens = Metrics.counter(METRICS_NAMESPACE, "tokens")
        self._heartbeat = Heartbeat(log, "export: documents tokenized by this worker")

    def _documents(self, rows: Iterable[tuple[int, int, str, str | None, str]]) -> Iterator[tuple[str, str]]:
        """(doc id, text) in the plan's order from (doc position, paragraph position, doc id, title, text)."""
        by_doc: dict[int, list[tuple[int, str, str | None, str]]] = {}
        for doc_pos, para_pos, doc_id, title, text in rows:
            by_doc.setdefault(doc_pos, []).append((para_pos, doc_id, title, text))
        for doc_pos in sorted(by_doc):
            pieces = sorted(by_doc[doc_pos])
            doc_id = pieces[0][1]
            if self.config.unit == "paragraph":
                yield doc_id, pieces[0][3]
            else:
                yield doc_id, article_text([(title, text) for _, _, title, text in pieces])

    def process(self, element: tuple[tuple[str, int, int], Iterable[Any]]) -> Iterator[str]:
        (component, chunk, repeat), rows = element
        docs = list(self._documents(rows))
        prefix = f"{component}-{chunk:05d}"
        remote = storage.is_remote(self.out)
        folder = Path(tempfile.mkdtemp(prefix="pmc-curate-export-")) if remote else Path(self.out) / component
        copies = repeat if self.config.materialize else 1
        try:
            with open_writer(self.config.format, folder, prefix, vocab_size=self.vocab_size, eos_id=self.eos_id,
                             max_tokens_per_shard=self.config.max_tokens_per_shard, token_dtype=self.config.token_dtype,
                             tokenizer_name=T.load(self.config.tokenizer, self.config.eos_token)[1].name) as w:  # fmt: skip
                for start in range(0, len(docs), self.config.batch_size):
                    batch = docs[start : start + self.config.batch_size]
                    encs = self.tok.encode_batch([t for _, t in batch], add_special_tokens=False)
                    for (doc_id, _), enc in zip(batch, encs, strict=True):
                        ids = np.asarray(enc.ids, dtype=np.uint32)
                        for c in range(copies):
                            w.add(ids, doc_id if copies == 1 else f"{doc_id}#{c}", source=self.source)
                    self._heartbeat.tick(len(batch))
            shards = w.close()
            self._docs.inc(len(docs))
            self._tokens.inc(sum(s.tokens for s in shards))
            for s in shards:
                for name in s.files:
                    if remote:
                        (storage.as_location(self.out) / component / name).write_bytes((folder / name).read_bytes())
                    yield f"{component}/{name}"
        finally:
            if remote:
                shutil.rmtree(folder, ignore_errors=True)


class ToChunk(beam.DoFn):
    """A paragraph row -> ((component, chunk, repeat), (doc position, paragraph position, doc id, title, text)).

    The plan comes as one side-input value, JSON bytes (Beam infers the type of every element of a
    `Create`, which costs more than tokenizing when the plan is a list of tuples); decoded once per worker."""

    def __init__(self) -> None:
        self._blob: bytes | None = None
        self._plan: dict[str, list[Any]] = {}

    def process(self, row: dict[str, Any], blob: bytes) -> Iterator[tuple[tuple[str, int, int], tuple]]:
        if blob is not self._blob:
            self._plan, self._blob = dict(json.loads(blob)), blob
        try:
            component, chunk, doc_pos, para_pos, doc_id, repeat = self._plan[row["paragraph_id"]]
        except KeyError:  # the plan was read from the same files: only if they changed meanwhile
            raise ConfigError(f"paragraph {row['paragraph_id']!r} of the subset is not in the export's plan: the subset "
                              "changed during the export; run it again") from None
        yield (component, chunk, repeat), (doc_pos, para_pos, doc_id, row.get("section_title"), row["text"])


class Export(beam.PTransform):
    """Read the subset's rows, write every chunk's shards; the output is the written files' names."""

    def __init__(self, config: ExportConfig, data_files: list[str], plan: list[Any], out: str, vocab_size: int,
                 eos_id: int, source: str) -> None:  # fmt: skip
        super().__init__()
        self.config, self.data_files, self.plan, self.out = config, data_files, plan, out
        self.vocab_size, self.eos_id, self.source = vocab_size, eos_id, source

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        plan = pbegin | "Plan" >> beam.Create([json.dumps(self.plan).encode()], reshuffle=False)
        return (
            pbegin
            | "ReadSubset" >> beam.Create(self.data_files)
            | "ReadParquet" >> beam.FlatMap(_read_rows)
            | "ToChunks" >> beam.ParDo(ToChunk(), beam.pvalue.AsSingleton(plan))  # the plan: ids only
            | "GroupChunks" >> beam.GroupByKey()
            | "TokenizeAndWrite" >> beam.ParDo(TokenizeAndWrite(self.config, self.out, self.vocab_size, self.eos_id,
                                                                self.source))  # fmt: skip
        )


def _read_rows(path: str) -> Iterator[dict[str, Any]]:
    """The copy-0 rows of one subset file (a repeated paragraph is read once), text columns only."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    with storage.as_location(path).open("rb") as f:
        pf = pq.ParquetFile(f)
        for batch in pf.iter_batches(columns=["paragraph_id", "section_title", "text", "copy"], batch_size=8192):
            yield from batch.filter(pc.equal(batch.column("copy"), 0)).to_pylist()
