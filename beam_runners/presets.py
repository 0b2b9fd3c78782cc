"""Named runner presets: each is only a list of Beam flags. Nothing in pipeline/ branches on the runner.

    pmc-curate parse in/ --workdir W --preset direct-multiprocess
    pmc-curate propagate --workdir gs://b/w --preset dataflow-gpu --project P --region us-central1 \\
        --temp_location gs://b/tmp --sdk_container_image REGION-docker.pkg.dev/P/repo/pmc-curate:0.1.0-cu

A preset supplies defaults; any flag the user passes wins over the preset's value for that flag.
`validate(options)` checks, before anything is submitted, what each remote runner needs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from apache_beam.options.pipeline_options import (
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PipelineOptions,
    PortableOptions,
    PrismRunnerOptions,
    StandardOptions,
    WorkerOptions,
)
from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator

from beam_runners import engines
from pipeline.core.errors import ConfigError

# Dataflow GPU workers for propagation: one NVIDIA L4 per G2 VM with the driver installed by the service
# (https://cloud.google.com/dataflow/docs/gpu/use-l4-gpus). g2-standard-8 = 8 vCPU for tokenisation
# beside the GPU; one SDK process per VM so a single model copy owns the GPU.
GPU_SERVICE_OPTION = "worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"
GPU_MACHINE_TYPE = "g2-standard-8"
CPU_MACHINE_TYPE = "n2-standard-4"

PRESETS: dict[str, tuple[str, list[str]]] = {
    "direct": ("DirectRunner, in-process (the default; tests and the demo)", [
        "--runner=DirectRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1",
    ]),
    "direct-multiprocess": ("DirectRunner, one worker process per core on this machine", [
        "--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=0",
    ]),
    "portable": ("PortableRunner with an embedded job server and LOOPBACK workers (the Fn API path "
                 "Flink and Dataflow use), runs locally", [
        "--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK",
    ]),
    "prism": ("PrismRunner (Beam's portable Go runner) from the binary `make install` built, LOOPBACK workers", [
        "--runner=PrismRunner", "--prism_location={prism}", "--environment_type=LOOPBACK",
    ]),
    "flink-local": ("FlinkRunner on a Flink mini-cluster inside the job server's JVM, parallelism 2, LOOPBACK "
                    "workers (the jar from `make install` or --flink_job_server_jar)", [
        "--runner=FlinkRunner", "--flink_master=[local]", "--parallelism=2", "--environment_type=LOOPBACK",
        "--flink_job_server_jar={flink_jar}",
        # Java 17+: the embedded Flink reflects into these JDK packages
        *(f"--job_server_jvm_property=--add-opens=java.base/{p}=ALL-UNNAMED" for p in ("java.lang", "java.nio", "java.util")),
    ]),
    "flink": ("FlinkRunner against a running Flink cluster (--flink_master=HOST:PORT); workers run the "
              "project's container (--environment_config=IMAGE), or PROCESS/EXTERNAL workers", [
        "--runner=FlinkRunner", "--environment_type=DOCKER",
    ]),
    "dataflow": ("DataflowRunner on CPU workers in the project's container (--sdk_container_image)", [
        "--runner=DataflowRunner", f"--machine_type={CPU_MACHINE_TYPE}", "--sdk_location=container",
        "--experiments=use_runner_v2",
    ]),
    "dataflow-gpu": ("DataflowRunner with one NVIDIA L4 per worker, for propagate", [
        "--runner=DataflowRunner", f"--machine_type={GPU_MACHINE_TYPE}", "--sdk_location=container",
        "--experiments=use_runner_v2", f"--dataflow_service_options={GPU_SERVICE_OPTION}",
        "--experiments=no_use_multiple_sdk_containers",
    ]),
}


def _flag_name(arg: str) -> str | None:
    return arg.split("=", 1)[0] if arg.startswith("--") else None


def expand(argv: Sequence[str]) -> list[str]:
    """Replace `--preset NAME` / `--preset=NAME` by the preset's flags; the user's own flags win."""
    argv = list(argv)
    names: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--preset":
            if i + 1 >= len(argv):
                raise ConfigError("--preset needs a name: " + ", ".join(PRESETS))
            names.append(argv[i + 1])
            i += 2
            continue
        if a.startswith("--preset="):
            names.append(a.split("=", 1)[1])
        else:
            rest.append(a)
        i += 1
    out: list[str] = []
    given = {_flag_name(a) for a in rest}
    for name in names:
        if name not in PRESETS:
            raise ConfigError(f"unknown runner preset {name!r}; presets: {', '.join(PRESETS)}")
        for flag in PRESETS[name][1]:
            # Repeatable flags (experiments, service options) accumulate; single-valued ones yield to the user.
            if _flag_name(flag) in given and _flag_name(flag) not in ("--experiments", "--job_server_jvm_property"):
                continue
            out.append(flag.format(prism=engines.prism_path(), flink_jar=engines.flink_job_server_path()))
    return out + rest


def validate(options: PipelineOptions) -> None:
    """Check what a remote runner needs before submitting, with a message saying which flag to add."""
    runner = str(options.view_as(StandardOptions).runner or "")
    missing: list[str] = []
    if runner.endswith("DataflowRunner"):
        gc = options.view_as(GoogleCloudOptions)
        worker = options.view_as(WorkerOptions)
        if not gc.project:
            missing.append("--project=GCP_PROJECT")
        if not gc.region:
            missing.append("--region=REGION (e.g. us-central1)")
        if not gc.temp_location or not str(gc.temp_location).startswith("gs://"):
            missing.append("--temp_location=gs://BUCKET/tmp")
        elif bad := _bad_gcs_paths(gc):
            # Beam falls back to creating a default bucket (a GCS call that times out after 120 s offline).
            raise ConfigError("DataflowRunner: " + "; ".join(bad))
        elif not gc.staging_location:
            # Beam would create a default bucket through the [gcp] extra; derive it from temp_location instead.
            gc.staging_location = str(gc.temp_location).rstrip("/") + "/staging"
        if not worker.sdk_container_image:
            missing.append("--sdk_container_image=IMAGE (built from beam_runners/dataflow/Dockerfile)")
        accel = [o for o in (gc.dataflow_service_options or []) if o.startswith("worker_accelerator=")]
        if accel and not str(worker.machine_type or "").startswith(("g2-", "a2-", "a3-", "n1-")):
            raise ConfigError(f"GPU workers ({accel[0]}) need a GPU machine type, got --machine_type={worker.machine_type}")
    elif runner.endswith("FlinkRunner"):
        missing += _flink_missing(options)
    elif runner.endswith("PrismRunner"):
        prism = options.view_as(PrismRunnerOptions)
        if not prism.prism_location:
            prism.prism_location = str(engines.prism_path())  # never Beam's download from GitHub
        if Path(prism.prism_location) == engines.prism_path() and (why := engines.missing_prism()):
            raise ConfigError(f"PrismRunner: {why}")
        if "://" not in prism.prism_location and not Path(prism.prism_location).is_file():
            raise ConfigError(f"PrismRunner: --prism_location={prism.prism_location} is not a file")
    if missing:
        raise ConfigError(f"{runner} needs: " + ", ".join(missing))


def _bad_gcs_paths(gc: GoogleCloudOptions) -> list[str]:
    """Beam's own check of --temp_location/--staging_location (bucket names are 3-63 characters ...)."""
    validator = PipelineOptionsValidator(gc, None)
    return [f"--{name}={getattr(gc, name)} is not a valid gs://BUCKET/PATH: {err}"
            for name in ("temp_location", "staging_location") if getattr(gc, name)
            for err in validator.validate_gcs_path(gc, name)]


_ENVIRONMENT_NEEDS = {
    "DOCKER": "--environment_config=IMAGE (built from beam_runners/dataflow/Dockerfile)",
    "PROCESS": '--environment_config=\'{"command": "/path/to/boot"}\' (Beam\'s Python boot program on every '
               "TaskManager, with the project installed beside it)",
    "EXTERNAL": "--environment_config=HOST:PORT (a worker pool: python -m apache_beam.runners.worker.worker_pool_main)",
}


def _flink_missing(options: PipelineOptions) -> list[str]:
    flink = options.view_as(FlinkRunnerOptions)
    portable = options.view_as(PortableOptions)
    missing: list[str] = []
    if flink.flink_master == "[local]":
        jar = flink.flink_job_server_jar
        if not jar or (Path(jar) == engines.flink_job_server_path() and engines.missing_flink_job_server()):
            raise ConfigError(f"FlinkRunner with --flink_master=[local]: {engines.missing_flink_job_server()}")
        if "://" not in jar and not Path(jar).is_file():
            raise ConfigError(f"FlinkRunner: --flink_job_server_jar={jar} is not a file")
    elif not flink.flink_master or flink.flink_master == "[auto]" or not re.fullmatch(r"[\w.\-]+:\d+", flink.flink_master):
        missing.append("--flink_master=HOST:PORT (the Flink cluster's REST endpoint; [local] with a job server jar "
                       "runs an embedded Flink: --preset flink-local)")
    env = (portable.environment_type or "").upper()
    if env in _ENVIRONMENT_NEEDS and not portable.environment_config:
        missing.append(_ENVIRONMENT_NEEDS[env])
    return missing
