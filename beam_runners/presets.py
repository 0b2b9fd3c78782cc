"""Named runner presets: each is only a list of Beam flags. Nothing in pipeline/ branches on the runner.

    pmc-curate parse in/ --workdir W --preset direct-multiprocess
    pmc-curate propagate --workdir gs://b/w --preset dataflow-gpu --project P --region us-central1 \\
        --temp_location gs://b/tmp --sdk_container_image REGION-docker.pkg.dev/P/repo/pmc-curate:0.1.0-cu

A preset supplies defaults; any flag the user passes wins over the preset's value for that flag.
`validate(options)` checks, before anything is submitted, what each remote runner needs.
"""

from __future__ import annotations

from collections.abc import Sequence

from apache_beam.options.pipeline_options import (
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PipelineOptions,
    PortableOptions,
    StandardOptions,
    WorkerOptions,
)

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
    "flink": ("FlinkRunner against a running Flink cluster (--flink_master=HOST:PORT); workers run the "
              "project's container (--environment_config=IMAGE)", [
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
            if _flag_name(flag) in given and _flag_name(flag) not in ("--experiments",):
                continue
            out.append(flag)
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
        elif not gc.staging_location:
            # Beam would create a default bucket through the [gcp] extra; derive it from temp_location instead.
            gc.staging_location = str(gc.temp_location).rstrip("/") + "/staging"
        if not worker.sdk_container_image:
            missing.append("--sdk_container_image=IMAGE (built from beam_runners/dataflow/Dockerfile)")
        accel = [o for o in (gc.dataflow_service_options or []) if o.startswith("worker_accelerator=")]
        if accel and not str(worker.machine_type or "").startswith(("g2-", "a2-", "a3-", "n1-")):
            raise ConfigError(f"GPU workers ({accel[0]}) need a GPU machine type, got --machine_type={worker.machine_type}")
    elif runner.endswith("FlinkRunner"):
        flink = options.view_as(FlinkRunnerOptions)
        portable = options.view_as(PortableOptions)
        if not flink.flink_master or flink.flink_master in ("[auto]", "[local]"):
            missing.append("--flink_master=HOST:PORT (the Flink cluster's REST endpoint)")
        if portable.environment_type == "DOCKER" and not portable.environment_config:
            missing.append("--environment_config=IMAGE (built from beam_runners/dataflow/Dockerfile)")
    if missing:
        raise ConfigError(f"{runner} needs: " + ", ".join(missing))
