"""`--fetch-concurrency`: the parse keeps several reads in flight per worker (pipeline/stages/parse/fetching.py).

Against moto's S3 server (a real socket on 127.0.0.1, each request held 20 ms like a network round trip):
the same rows and the same requests as one read at a time, with reads seen overlapping on the server.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from pipeline.cli import main
from pipeline.core.errors import ConfigError
from pipeline.stages.parse.fetching import ConcurrentFetchDoFn
from tests.pmc_cloud_mirror import build_mirror, upload
from tests.test_parse_pmc_cloud import q

TABLES = {"articles": "*", "paragraphs": "*", "versions": "*", "rejects": "*"}


class Sleepy(ConcurrentFetchDoFn):
    """fetch(x) sleeps a little (longer for some x, so later ones finish first) and counts overlaps."""

    def setup(self) -> None:
        super().setup()
        self.lock, self.now, self.most = threading.Lock(), 0, 0

    def fetch(self, x: int) -> list:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(0.001 * ((x * 7) % 5))
        with self.lock:
            self.now -= 1
        return [beam.pvalue.TaggedOutput("fives", x)] if x % 5 == 0 else [x, -x]

    def inline(self, x: int) -> bool:
        return x == 33  # stands for an archive: streamed in the bundle's thread, after everything before it

    def fetch_inline(self, x: int):
        yield x
        yield x + 1000


def drive(dofn: Sleepy, items: list[int]) -> list[tuple]:
    """One bundle through the DoFn's methods, as a runner calls them; outputs unwrapped in emitted order."""
    dofn.setup()
    dofn.start_bundle()
    out = []
    for x in items:
        out += dofn.process(x, window=GlobalWindow(), timestamp=MIN_TIMESTAMP)
    out += dofn.finish_bundle()
    dofn.teardown()
    got = []
    for o in out:
        tag, v = (o.tag, o.value) if isinstance(o, beam.pvalue.TaggedOutput) else (None, o)
        if isinstance(v, WindowedValue):
            assert v.windows == (GlobalWindow(),) and v.timestamp == MIN_TIMESTAMP
            v = v.value
        got.append((tag, v))
    return got


def test_outputs_in_input_order_with_a_bounded_number_in_flight():
    items = list(range(1, 60))
    seq, seq_fn = drive(Sleepy(1), items), Sleepy(1)
    fn = Sleepy(8)
    conc = drive(fn, items)
    assert conc == seq  # the order of a sequential DoFn, tagged outputs included
    assert conc[:3] == [(None, 1), (None, -1), (None, 2)] and (None, 1033) in conc
    assert 1 < fn.most <= 8  # reads overlapped, never more than the concurrency (memory: 8 x --max-file-mb)
    assert seq_fn.concurrency == 1
    with pytest.raises(ConfigError, match="--fetch-concurrency"):
        Sleepy(0)


@pytest.fixture(scope="module")
def mirror(shared_sample: Path, tmp_path_factory: pytest.TempPathFactory):
    return build_mirror(shared_sample, tmp_path_factory.mktemp("mirror") / "m")


def _parse_watched(server, src: str, work: Path, n: int, *flags: str) -> dict:
    with server.watch(delay=0.02) as stats:
        assert main(["parse", src, "--workdir", str(work), "--fetch-concurrency", str(n), *flags]) == 0
    return stats


def _rows(work: Path) -> dict[str, list]:
    out = {}
    for t, cols in TABLES.items():
        if not list(Path(work, t if t != "rejects" else "rejects").glob("*.parquet")):
            continue
        sql = f"SELECT {cols} FROM {t.upper()}"
        out[t] = sorted(q(str(work), sql), key=repr)
    return out


def test_pmc_cloud_layout_same_rows_and_requests_as_one_at_a_time(mirror, s3_server, tmp_path):
    bucket = s3_server.bucket()
    upload(mirror.root, s3_server.client(), bucket, acl="private")
    flags = ("--pmcids", f"{mirror.pmcids[0]}-{mirror.pmcids[20]}", "--min-tokens", "0")
    with s3_server.use():
        one = _parse_watched(s3_server, f"s3://{bucket}/", tmp_path / "w1", 1, *flags)
        many = _parse_watched(s3_server, f"s3://{bucket}/", tmp_path / "w8", 8, *flags)
    assert _rows(tmp_path / "w8") == _rows(tmp_path / "w1")
    (n_versions,) = q(str(tmp_path / "w8"), "SELECT count(*) FROM VERSIONS")[0]
    assert n_versions >= 20
    assert many["objects"] == one["objects"]  # the same requests per object: concurrency only overlaps them
    assert one.get("HEAD", 0) == 0 and one["GET"] <= 2 * n_versions + 20, one  # + listings, manifest, parts
    assert one["max_in_flight"] == 1 and 1 < many["max_in_flight"] <= 8, (one, many)


def test_loose_remote_files_same_rows_and_requests_as_one_at_a_time(shared_sample, s3_server, tmp_path):
    bucket = s3_server.bucket()
    client = s3_server.client()
    files = sorted(p for p in shared_sample.iterdir() if p.suffix in (".xml", ".nxml"))[:12]
    for p in files:
        client.put_object(Bucket=bucket, Key=f"loose/{p.name}", Body=p.read_bytes())
    client.put_object(Bucket=bucket, Key="loose/huge.xml", Body=b"<article>" + b" " * 3000 + b"</article>")
    flags = ("--min-tokens", "0", "--max-file-mb", "0.002")
    with s3_server.use():
        one = _parse_watched(s3_server, f"s3://{bucket}/loose/", tmp_path / "w1", 1, *flags)
        many = _parse_watched(s3_server, f"s3://{bucket}/loose/", tmp_path / "w8", 8, *flags)
    assert _rows(tmp_path / "w8") == _rows(tmp_path / "w1")
    assert dict(q(str(tmp_path / "w8"), "SELECT reason, count(*) FROM REJECTS GROUP BY 1 ORDER BY 1"))["too_large"] >= 1
    assert many["objects"] == one["objects"] and len(many["objects"]) >= 13
    assert 1 < many["max_in_flight"] <= 8, many
