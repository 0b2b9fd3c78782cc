"""Where the local engines live: Prism (a Go binary) and Flink's job server (a Java jar).

`make install` builds/fetches them once into the repository's ignored folder `.cache/engines/`
(`PMC_CURATE_ENGINES` overrides it):

    .cache/engines/bin/prism                 go install github.com/apache/beam/sdks/v2/go/cmd/prism@v2.77.0
    .cache/engines/flink-job-server.jar      org.apache.beam:beam-runners-flink-<flink>-job-server:<beam>

`missing_*` return None when the engine is there, else one sentence saying what is missing and how to get
it; the presets (presets.py) and the engine tests use the same sentences.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

BEAM_VERSION = "2.77.0"
PRISM_MODULE = f"github.com/apache/beam/sdks/v2/go/cmd/prism@v{BEAM_VERSION}"
FLINK_VERSION = "2.2"
FLINK_JOB_SERVER = f"org.apache.beam:beam-runners-flink-{FLINK_VERSION}-job-server:{BEAM_VERSION}"
REPO = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """The folder `make install` puts the engines in."""
    return Path(os.environ.get("PMC_CURATE_ENGINES") or REPO / ".cache" / "engines")


def prism_path() -> Path:
    return cache_dir() / "bin" / "prism"


def flink_job_server_path() -> Path:
    return cache_dir() / "flink-job-server.jar"


def missing_prism() -> str | None:
    """None when the Prism binary is installed, else what is missing."""
    if prism_path().is_file() and os.access(prism_path(), os.X_OK):
        return None
    why = "" if shutil.which("go") else " (Go is not installed: it needs the `go` command, 1.22 or newer)"
    return (f"no Prism binary at {prism_path()}{why}; run `make install` (it runs `go install {PRISM_MODULE}`) "
            "or pass --prism_location=PATH")


def missing_flink_job_server() -> str | None:
    """None when the Flink job server jar is installed, else what is missing."""
    if flink_job_server_path().is_file():
        return None
    why = "" if shutil.which("mvn") else " (Maven is not installed: it needs the `mvn` command)"
    return (f"no Flink job server jar at {flink_job_server_path()}{why}; `make install` tries "
            f"to fetch {FLINK_JOB_SERVER} with Maven (the Maven registry of this project's machines "
            "does not serve it: docs/running.md); or pass --flink_job_server_jar=PATH")
