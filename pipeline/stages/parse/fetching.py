"""Many reads in flight per DoFn instance, outputs in input order: the parse's fetches wait on the network.

A read of the public bucket waits a round trip (tens of milliseconds from a cloud region); one at a time,
a worker spends most of its time waiting. `ConcurrentFetchDoFn.process` hands each element's `fetch`
to a thread pool and keeps at most `concurrency` of them in flight; the outputs of the oldest element
are emitted once it is done, so the outputs of a bundle come out in the order its inputs came in (the
same order as a sequential DoFn), and at most `concurrency` fetched objects are held at once: memory is
bounded by `concurrency x --max-file-mb`. `finish_bundle` drains what is left.

`fetch` runs in a pool thread: it must only read and build outputs (plain values or TaggedOutput), no
Beam metrics (they belong to the bundle's thread); `count(outputs)` runs in the bundle's thread for that.
The outputs are re-emitted with the window and timestamp of the element they came from.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import apache_beam as beam
from apache_beam.utils.windowed_value import WindowedValue

from pipeline.core.errors import ConfigError

# Chosen by measurement (docs/benchmarks.md, "Parse under network latency"): one core parses ~80 articles/s
# and an article costs ~2 requests, so hiding an 80 ms round trip needs ~80 x 2 x 0.08 = 13 in flight; 16
# cut the parse at 80 ms from 110 s (one at a time) to 41 s, against 25 s with no added latency.
DEFAULT_FETCH_CONCURRENCY = 16
MAX_FETCH_CONCURRENCY = 256


def check_concurrency(n: int) -> int:
    if not 1 <= n <= MAX_FETCH_CONCURRENCY:
        raise ConfigError(f"--fetch-concurrency must be between 1 and {MAX_FETCH_CONCURRENCY}, not {n}")
    return n


class ConcurrentFetchDoFn(beam.DoFn):
    """Subclasses define `fetch(element) -> list of outputs` (run in a pool thread) and may define
    `count(outputs)` (run in the bundle's thread) and `inline(element) -> bool` for elements to handle
    in the bundle's thread after everything before them, through `fetch_inline(element)`, a generator
    whose outputs are emitted as it yields them (a streamed archive)."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = check_concurrency(concurrency)

    def setup(self) -> None:
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=type(self).__name__) \
            if self.concurrency > 1 else None
        self._pending: collections.deque[tuple[Future[list[Any]], Any, Any]] = collections.deque()

    def teardown(self) -> None:
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def start_bundle(self) -> None:
        self._pending.clear()

    def fetch(self, element: Any) -> list[Any]:
        raise NotImplementedError

    def count(self, outputs: list[Any]) -> None:
        """Beam metrics for one element's outputs (the bundle's thread)."""

    def inline(self, element: Any) -> bool:
        return False

    def fetch_inline(self, element: Any) -> Iterator[Any]:
        yield from self.fetch(element)

    def process(self, element: Any, window: Any = beam.DoFn.WindowParam,
                timestamp: Any = beam.DoFn.TimestampParam) -> Iterator[Any]:
        if self.inline(element):
            yield from self._drain(0)  # everything before it first: the order of a sequential DoFn
            yield from self.fetch_inline(element)  # streamed, in the bundle's thread
            return
        if self._pool is None:  # --fetch-concurrency 1: the sequential DoFn
            outs = self.fetch(element)
            self.count(outs)
            yield from outs
            return
        self._pending.append((self._pool.submit(self.fetch, element), window, timestamp))
        yield from self._drain(self.concurrency - 1)

    def finish_bundle(self) -> Iterator[Any]:
        yield from self._drain(0)

    def _drain(self, keep: int) -> Iterator[Any]:
        """Emit the oldest elements' outputs (waiting for them) until at most `keep` are in flight."""
        while len(self._pending) > keep:
            fut, window, ts = self._pending.popleft()
            outs = fut.result()  # fetch catches what it expects; anything else is a bug and fails the bundle
            self.count(outs)
            for o in outs:
                if isinstance(o, beam.pvalue.TaggedOutput):
                    yield beam.pvalue.TaggedOutput(o.tag, WindowedValue(o.value, ts, (window,)))
                else:
                    yield WindowedValue(o, ts, (window,))
