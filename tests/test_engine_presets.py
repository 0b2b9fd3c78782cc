"""The engine presets say what is missing before anything runs: `flink` (a cluster at HOST:PORT, DOCKER,
PROCESS or EXTERNAL workers, each with what it needs), `flink-local` (the job server jar), `prism` (the
binary). Fast: options only, nothing is started."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import FlinkRunnerOptions, PortableOptions, PrismRunnerOptions

from beam_runners import engines
from beam_runners.options import pipeline_options
from pipeline.cli import main as cli
from pipeline.core.errors import ConfigError

MASTER = "--flink_master=flink-jobmanager:8081"


@pytest.mark.parametrize(("env", "config"), [
    ("DOCKER", "registry/pmc-curate:0.1.0"),
    ("PROCESS", '{"command": "/opt/apache/beam/boot"}'),
    ("EXTERNAL", "worker-pool:50000"),
])
def test_flink_accepts_every_worker_environment(env: str, config: str) -> None:
    o = pipeline_options(["--preset=flink", MASTER, f"--environment_type={env}", f"--environment_config={config}"])
    assert o.view_as(PortableOptions).environment_type == env
    assert o.view_as(FlinkRunnerOptions).flink_master == "flink-jobmanager:8081"


@pytest.mark.parametrize(("env", "needs"), [
    ("DOCKER", "--environment_config=IMAGE"),
    ("PROCESS", "boot program"),
    ("EXTERNAL", "worker_pool_main"),
])
def test_flink_names_what_each_environment_needs(env: str, needs: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(needs)):
        pipeline_options(["--preset=flink", MASTER, f"--environment_type={env}"])


@pytest.mark.parametrize("master", ["", "--flink_master=[auto]", "--flink_master=jobmanager"])
def test_flink_needs_host_and_port(master: str) -> None:
    argv = ["--preset=flink", "--environment_config=img", *([master] if master else [])]
    with pytest.raises(ConfigError, match=re.escape("--flink_master=HOST:PORT")):
        pipeline_options(argv)


def test_flink_local_names_the_missing_jar(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PMC_CURATE_ENGINES", str(tmp_path / "none"))
    with pytest.raises(ConfigError, match=r"flink-job-server\.jar.*--flink_job_server_jar"):
        pipeline_options(["--preset", "flink-local"])
    with pytest.raises(ConfigError, match="is not a file"):
        pipeline_options(["--preset", "flink-local", f"--flink_job_server_jar={tmp_path / 'x.jar'}"])
    jar = tmp_path / "given.jar"
    jar.write_bytes(b"PK")
    o = pipeline_options(["--preset", "flink-local", f"--flink_job_server_jar={jar}"])  # the user's jar wins
    flink = o.view_as(FlinkRunnerOptions)
    assert (flink.flink_master, flink.parallelism, flink.flink_job_server_jar) == ("[local]", 2, str(jar))
    assert o.view_as(PortableOptions).environment_type == "LOOPBACK"
    assert "--add-opens=java.base/java.lang=ALL-UNNAMED" in o.get_all_options()["job_server_jvm_properties"]


def test_flink_local_from_the_cli_says_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("PMC_CURATE_ENGINES", str(tmp_path / "none"))
    assert cli(["parse", str(tmp_path), "--workdir", str(tmp_path / "w"), "--preset", "flink-local"]) == 2
    err = capsys.readouterr().err
    assert "beam-runners-flink-2.2-job-server" in err and "--flink_job_server_jar" in err


def test_prism_uses_the_installed_binary_or_names_what_is_missing(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    monkeypatch.setenv("PMC_CURATE_ENGINES", str(tmp_path))
    with pytest.raises(ConfigError, match=r"no Prism binary .*make install.*--prism_location"):
        pipeline_options(["--preset", "prism"])
    with pytest.raises(ConfigError, match=r"no Prism binary"):  # never Beam's download from GitHub
        pipeline_options(["--runner=PrismRunner"])
    binary = engines.prism_path()
    binary.parent.mkdir(parents=True)
    binary.write_bytes(b"#!/bin/sh\n")
    binary.chmod(0o755)
    o = pipeline_options(["--preset", "prism"])
    assert o.view_as(PrismRunnerOptions).prism_location == str(binary)
    assert pipeline_options(["--runner=PrismRunner"]).view_as(PrismRunnerOptions).prism_location == str(binary)
