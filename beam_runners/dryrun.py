"""`--dry-run FILE`: build a stage's job for the chosen runner, write what would be submitted, submit nothing.

    pmc-curate parse in/ --workdir gs://b/w --preset dataflow ... --dry-run job.json

The stage builds its pipeline as usual; `make_pipeline` (options.py) returns a `DryRunPipeline`, whose
`run` writes FILE and raises `DryRunFinished` instead of running: nothing after it in the stage (summaries,
markers) happens, and stages skip their table resets when `is_dry_run` (nothing is written to W).

- DataflowRunner: Beam's own `--dry_run=True` path (DataflowRunner builds the `Job` and returns before
  calling the service), completed with the job's `environment` (worker pool, machine type, service
  options, experiments, SDK pipeline options, the packages that would be staged) built by Beam's
  `apiclient.Environment` exactly as `create_job_description` would, but without uploading anything.
  FILE holds {"runner", "job": the CreateJob request's job, "pipeline": the runner-v2 pipeline proto that
  would be staged as pipeline.pb, "artifacts": the files that would be staged}.
- Any other runner (Prism, Flink, portable, direct): what a portable job service receives,
  {"runner", "options", "pipeline": the pipeline proto}.
Every string in FILE goes through `pipeline.core.secrets.redact`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
    TestOptions,
)
from google.protobuf import json_format

from pipeline.core import secrets, storage
from pipeline.core.errors import DryRunFinished

FLAG = "--dry-run"


class DryRunOptions(PipelineOptions):
    """The project's own pass-through flag (Beam's `--dry_run=True` is a different, Dataflow-only flag)."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument(FLAG, dest="dry_run_file", default=None, metavar="FILE",
                            help="write the job this stage would submit to FILE (JSON); submit nothing")


def dry_run_file(options: PipelineOptions | list[str] | None) -> str | None:
    """FILE of `--dry-run FILE` in a stage's Beam flags (or its PipelineOptions), else None."""
    if options is None:
        return None
    if not isinstance(options, PipelineOptions):
        options = PipelineOptions(list(options))
    return options.view_as(DryRunOptions).dry_run_file


def is_dry_run(options: PipelineOptions | list[str] | None) -> bool:
    return dry_run_file(options) is not None


class DryRunPipeline(beam.Pipeline):
    """A Beam pipeline whose `run` writes the job it would submit to FILE instead of running it."""

    def run(self, test_runner_api: Any = "AUTO") -> beam.runners.runner.PipelineResult:
        path = dry_run_file(self._options)
        assert path is not None
        runner = str(self._options.view_as(StandardOptions).runner or "DirectRunner")
        if runner.endswith("DataflowRunner"):
            self._options.view_as(TestOptions).dry_run = True  # Beam's path that builds the Job, calls nothing
            doc = dataflow_job(super().run(test_runner_api))
        else:
            doc = {"runner": runner, "options": self._options.get_all_options(drop_default=True),
                   "pipeline": json_format.MessageToDict(self.to_runner_api())}
        text = secrets.redact(json.dumps(doc, indent=1, sort_keys=True, default=str))
        storage.as_location(path).write_text(text + "\n")
        raise DryRunFinished(path, runner)


def dataflow_job(result: Any) -> dict[str, Any]:
    """The CreateJob request DataflowRunner would send, from the result of its `--dry_run=True` run."""
    from apache_beam.portability import common_urns
    from apache_beam.portability.api import beam_runner_api_pb2
    from apache_beam.runners.dataflow.internal import apiclient
    from apache_beam.runners.internal import names

    job = result.job
    staging = str(job.options.view_as(GoogleCloudOptions).staging_location).rstrip("/")
    artifacts = []
    for env in job.proto_pipeline.components.environments.values():
        for dep in env.dependencies:
            path = beam_runner_api_pb2.ArtifactFilePayload.FromString(dep.type_payload).path
            name = path.rsplit("/", 1)[-1]
            if dep.role_urn == common_urns.artifact_roles.STAGING_TO.urn:
                name = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(dep.role_payload).staged_name
            artifacts.append({"local": path, "staged_as": f"{staging}/{name}"})
    serialized = job.proto_pipeline.SerializeToString()
    job.proto.environment = apiclient.Environment(
        packages=sorted({a["staged_as"].rsplit("/", 1)[-1] for a in artifacts}), options=job.options,
        environment_version=apiclient._FNAPI_ENVIRONMENT_MAJOR_VERSION,
        proto_pipeline_staged_url=f"{staging}/{names.STAGED_PIPELINE_FILENAME}", proto_pipeline=job.proto_pipeline,
        pipeline_proto_hash=hashlib.sha256(serialized).hexdigest()).proto
    return {"runner": "DataflowRunner", "job": json.loads(job.json()),
            "pipeline": json_format.MessageToDict(job.proto_pipeline), "artifacts": artifacts}
