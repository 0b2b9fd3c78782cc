"""Beam's own SDK worker pool in a separate process, as the workers of a Flink or Dataflow job run.

    python -m apache_beam.runners.worker.worker_pool_main --service_port=PORT

The pool is what Beam's Python SDK container runs in `--worker_pool` mode (on Flink, and on Dataflow's
custom-container setups): a gRPC service that spawns a worker process for each `StartWorker` call of a
runner using `--environment_type=EXTERNAL`. The container starts it with
`--container_executable=/opt/apache/beam/boot`, and so do we, with `boot()` below standing in for
that Go program: it fetches the pipeline options and staged artifacts from the runner's provision
and artifact services and starts `apache_beam.runners.worker.sdk_worker_main`. Without it
(`boot=False`) the pool runs `python -c "SdkHarness(...).run()"`, whose workers never receive the
pipeline options: Beam's S3 filesystem then fails on every write ("Must provide one of client or
options"), which no real deployment does.

To catch every way a stage could depend on the launching process, the pool gets:
- a fresh, empty working directory (relative paths of the launcher do not resolve there),
- its own HOME and TMPDIR (nothing cached by the launcher is found there),
- an environment built from nothing: PATH (the venv's bin/ first), HOME, TMPDIR, LANG, offline flags
  for Hugging Face, and only the storage settings passed in explicitly (the S3 server's env dict,
  STORAGE_EMULATOR_HOST for GCS). No PYTHONPATH: the repo is installed in the venv in editable mode,
  so `pipeline` and `beam_runners` are importable from any cwd (a real worker image needs
  `pip install .` for the same). `tests` is not installed: DoFns used through the pool must come
  from `pipeline` or be pickled by value (functions defined inside a test).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
START_TIMEOUT_S = 60.0


@dataclass
class WorkerPool:
    port: int
    root: Path  # holds cwd/, home/, tmp/ and the pool's log
    env: dict[str, str]
    _proc: subprocess.Popen[bytes] = field(repr=False)

    @property
    def cwd(self) -> Path:
        return self.root / "cwd"

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def log(self) -> Path:
        return self.root / "pool.log"

    def beam_args(self) -> list[str]:
        return ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=EXTERNAL",
                f"--environment_config=localhost:{self.port}"]

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Kill the pool and every worker it spawned (they share the pool's process group)."""
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        # Workers outlive a SIGTERMed pool unless signalled too: clear the group either way.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)


def pool_env(root: Path, storage_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The pool's whole environment: nothing inherited from the launching process."""
    env = {
        "PATH": f"{VENV_BIN}{os.pathsep}/usr/local/bin{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": str(root / "home"),
        "TMPDIR": str(root / "tmp"),
        "LANG": "C.UTF-8",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    env.update(storage_env or {})
    return env


def start_pool(storage_env: Mapping[str, str] | None = None, boot: bool = True) -> WorkerPool:
    """Start a worker pool in a fresh temporary folder; returns once its port accepts connections.

    boot: start workers through `boot()` as Beam's SDK container does (False: the pool's bare
    `python -c` workers, which get no pipeline options)."""
    from tests.servers import free_port

    root = Path(tempfile.mkdtemp(prefix="beam-worker-pool-"))
    for sub in ("cwd", "home", "tmp"):
        (root / sub).mkdir()
    env = pool_env(root, storage_env)
    port = free_port()
    cmd = [str(VENV_BIN / "python"), "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}"]
    if boot:
        # The pool runs the executable with the container contract's flags; this file is not importable
        # there (`tests` is not installed), so the wrapper runs it by path.
        boot_sh = root / "boot"
        boot_sh.write_text(f'#!/bin/sh\nexec "{VENV_BIN / "python"}" "{Path(__file__).resolve()}" "$@"\n')
        boot_sh.chmod(0o755)
        cmd.append(f"--container_executable={boot_sh}")
    with open(root / "pool.log", "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=root / "cwd", env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: teardown kills the pool and its workers
        )
    pool = WorkerPool(port=port, root=root, env=env, _proc=proc)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            tail = pool.log_tail()
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"worker pool exited with {proc.returncode} before listening:\n{tail}")
        with contextlib.suppress(OSError), socket.create_connection(("localhost", port), timeout=1):
            return pool
        if time.monotonic() > deadline:
            pool.stop()
            raise RuntimeError(f"worker pool not listening on {port} after {START_TIMEOUT_S:.0f} s:\n{pool.log_tail()}")
        time.sleep(0.2)


@contextlib.contextmanager
def worker_pool(storage_env: Mapping[str, str] | None = None, boot: bool = True) -> Iterator[WorkerPool]:
    pool = start_pool(storage_env, boot=boot)
    try:
        yield pool
    finally:
        pool.stop()
        shutil.rmtree(pool.root, ignore_errors=True)


# ------------------------------------------------------------------------------------ the boot program


def boot(argv: list[str]) -> None:
    """What /opt/apache/beam/boot does for a Python worker, minus pip: provision info (pipeline options,
    endpoints), staged artifacts (the pickled main session) into a semi-persistent folder, then exec
    `sdk_worker_main` with the environment it reads. Staged requirements are not installed (offline):
    the venv already holds every dependency, like a custom worker image."""
    import argparse
    import json

    import grpc
    from apache_beam.portability.api import (
        beam_artifact_api_pb2,
        beam_artifact_api_pb2_grpc,
        beam_provision_api_pb2,
        beam_provision_api_pb2_grpc,
        beam_runner_api_pb2,
        endpoints_pb2,
    )
    from google.protobuf import json_format, text_format

    p = argparse.ArgumentParser()
    for flag in ("id", "logging_endpoint", "artifact_endpoint", "provision_endpoint", "control_endpoint"):
        p.add_argument(f"--{flag}", default="")
    a, _ = p.parse_known_args(argv)
    meta = [("worker_id", a.id)]
    with grpc.insecure_channel(a.provision_endpoint) as ch:
        info = beam_provision_api_pb2_grpc.ProvisionServiceStub(ch).GetProvisionInfo(
            beam_provision_api_pb2.GetProvisionInfoRequest(), metadata=meta).info
    semi = Path(tempfile.mkdtemp(prefix=f"beam-{a.id}-"))
    staged = semi / "staged"
    staged.mkdir()
    if info.dependencies:
        with grpc.insecure_channel(info.artifact_endpoint.url or a.artifact_endpoint) as ch:
            stub = beam_artifact_api_pb2_grpc.ArtifactRetrievalServiceStub(ch)
            for i, dep in enumerate(info.dependencies):
                name = f"artifact-{i}"
                if dep.role_payload:
                    name = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(dep.role_payload).staged_name or name
                with open(staged / name, "wb") as f:
                    for chunk in stub.GetArtifact(beam_artifact_api_pb2.GetArtifactRequest(artifact=dep), metadata=meta):
                        f.write(chunk.data)

    def descriptor(url: str) -> str:
        return text_format.MessageToString(endpoints_pb2.ApiServiceDescriptor(url=url))

    env = dict(os.environ)
    env.update({
        "WORKER_ID": a.id,
        "PIPELINE_OPTIONS": json.dumps(json_format.MessageToDict(info.pipeline_options)),
        "SEMI_PERSISTENT_DIRECTORY": str(semi),
        "LOGGING_API_SERVICE_DESCRIPTOR": descriptor(info.logging_endpoint.url or a.logging_endpoint),
        "CONTROL_API_SERVICE_DESCRIPTOR": descriptor(info.control_endpoint.url or a.control_endpoint),
        "RUNNER_CAPABILITIES": " ".join(info.runner_capabilities),
    })
    if info.status_endpoint.url:
        env["STATUS_API_SERVICE_DESCRIPTOR"] = descriptor(info.status_endpoint.url)
    os.execve(sys.executable, [sys.executable, "-m", "apache_beam.runners.worker.sdk_worker_main"], env)


if __name__ == "__main__":
    del sys.path[0]  # run by path: tests/ itself must not shadow any module the worker imports
    boot(sys.argv[1:])
