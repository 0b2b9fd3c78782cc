"""Shared fixtures. Tests that read ../shared/data skip cleanly when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("PMC_CURATE_SHARED_DATA", REPO.parent / "shared" / "data"))
SHARED_SAMPLE = SHARED_DATA / "pmc-oa-sample"
EXAMPLES = REPO / "examples"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def shared_sample() -> Path:
    """The real PMC-OA sample (83 articles). Skips the test when the folder is not there."""
    if not SHARED_SAMPLE.is_dir():
        pytest.skip(f"real PMC-OA sample not found at {SHARED_SAMPLE}")
    return SHARED_SAMPLE


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except Exception:  # torch missing or broken: no GPU tests either way
        has_gpu = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1 for the whole session (tests.servers.S3Server)."""
    from tests.servers import start_s3

    server = start_s3()
    yield server
    server._server.stop()


@pytest.fixture(scope="session")
def gcs_server():
    """gcp-storage-emulator on 127.0.0.1 for the whole session (tests.servers.GcsServer)."""
    from tests.servers import start_gcs

    server = start_gcs()
    yield server
    server._server.stop()


@pytest.fixture
def s3_workdir(s3_server):
    """A fresh `s3://bucket/run` work directory, with the S3 settings in the environment for the test."""
    with s3_server.use():
        yield f"s3://{s3_server.bucket()}/run"


@pytest.fixture
def gcs_workdir(gcs_server):
    """A fresh `gs://bucket/run` work directory, with STORAGE_EMULATOR_HOST set for the test."""
    with gcs_server.use():
        yield f"gs://{gcs_server.bucket()}/run"


@pytest.fixture(scope="module")
def s3_worker_pool(s3_server):
    """Beam's SDK worker pool in its own process, cwd, HOME and TMPDIR, with only the S3 server's
    settings in its environment (tests.worker_pool.WorkerPool; `pool.beam_args()` runs a stage on it)."""
    from tests.worker_pool import worker_pool

    with worker_pool(s3_server.env()) as pool:
        yield pool


@pytest.fixture(scope="module")
def gcs_worker_pool(gcs_server):
    """Beam's SDK worker pool in its own process, with only STORAGE_EMULATOR_HOST (and the project) set."""
    from tests.worker_pool import worker_pool

    with worker_pool(gcs_server.env()) as pool:
        yield pool
