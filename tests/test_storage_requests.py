"""What the storage layer asks an object store for (moto's S3 server, requests counted server side):
fingerprints from the listing (no HEAD per file), uploads streamed in parts (memory holds one part)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

from pipeline.core import storage
from pipeline.core.storage import S3_BLOCK_SIZE, Location


def test_a_fingerprint_after_a_listing_makes_no_request_per_file(s3_server, s3_workdir):
    root = Location(s3_workdir) / "table"
    for i in range(30):
        (root / f"part-{i:02d}.parquet").write_bytes(f"rows {i}".encode() * (i + 1))
    with s3_server.watch() as stats:
        files = root.glob("*.parquet")
        fp = storage.fingerprint(files, root)
    assert len(files) == 30 and fp["files"] == 30
    assert stats.get("HEAD", 0) == 0 and stats["requests"] <= 2, stats  # one listing page, nothing per file
    fresh = [f.info(fresh=True) for f in files]  # the same sizes and versions as a HEAD of each gives
    assert [f.info() for f in files] == fresh and fp["bytes"] == sum(i["size"] for i in fresh)
    (root / "part-00.parquet").write_bytes(b"rewritten")
    assert storage.fingerprint(root.glob("*.parquet"), root)["digest"] != fp["digest"]  # a rewrite shows


UPLOAD = """
import os, sys, tempfile, tracemalloc
from pipeline.core.storage import Location
with tempfile.TemporaryDirectory() as warm:  # imports and the client first: they are not the upload's
    open(os.path.join(warm, "x"), "wb").write(b"x")
    Location(sys.argv[2] + "-warm").upload_from(warm)
tracemalloc.start()
Location(sys.argv[2]).upload_from(sys.argv[1])
print(tracemalloc.get_traced_memory()[1])
"""


def test_upload_from_streams_large_files_in_parts(s3_server, s3_workdir, tmp_path):
    src = tmp_path / "model"
    src.mkdir()
    big = os.urandom(1 << 20) * (10 * S3_BLOCK_SIZE // (1 << 20))  # 80 MB: ten parts
    (src / "weights.bin").write_bytes(big)
    (src / "config.json").write_bytes(b'{"a": 1}')
    dest = Location(s3_workdir) / "model"
    (dest / "stale.txt").write_bytes(b"old")
    with s3_server.watch() as stats:  # in another process: moto's own memory is in this one
        out = subprocess.run([sys.executable, "-c", UPLOAD, str(src), str(dest)], capture_output=True, text=True,
                             env={**os.environ, **s3_server.env()}, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    peak = int(out.stdout.split()[-1])
    assert peak < 4 * S3_BLOCK_SIZE, peak  # a part at a time (and copies of it), never the 80 MB file
    assert stats.get("POST", 0) >= 2 and stats.get("PUT", 0) >= 11, stats  # multipart: create, 10 parts, complete
    assert sorted(x.relative_to(dest) for x in dest.glob("**")) == ["config.json", "weights.bin"]
    got = (dest / "weights.bin").read_bytes()
    assert hashlib.md5(got).digest() == hashlib.md5(big).digest()
