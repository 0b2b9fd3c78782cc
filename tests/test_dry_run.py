"""`--dry-run FILE`: the job a Beam stage would submit, written offline, with nothing submitted or written to W.

Dataflow: parse and propagate with the `dataflow` and `dataflow-gpu` presets against a gs:// work
directory on the GCS emulator (tests.servers), no credentials, no network beyond 127.0.0.1. The file is
the CreateJob request Beam's DataflowRunner builds (beam_runners/dryrun.py): we check the stage's
transforms, the container image, the GPU service option and machine type, and that no secret is in it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipeline.cli import main as cli
from pipeline.core import secrets, storage
from pipeline.core.workdir import Workdir
from pipeline.teacher.rules import sample_paragraphs, write_workdir
from tests.conftest import EXAMPLES

IMAGE = "us-central1-docker.pkg.dev/my-project/repo/pmc-curate:0.1.0"
SECRET = "sk-dry-run-secret-4242"
TRAIN = ["--max-length", "32", "--max-steps", "2", "--epochs", "1", "--batch-size", "8",
         "--validation-fraction", "0.3", "--seed", "3"]


def _dataflow(preset: str) -> list[str]:
    return [f"--preset={preset}", "--project=my-project", "--region=us-central1",
            "--temp_location=gs://my-temp-bucket/tmp", f"--sdk_container_image={IMAGE}"]


def _listing(root: str) -> list[str]:
    return sorted(str(p) for p in storage.as_location(root).glob("**/*"))


def _transforms(doc: dict) -> set[str]:
    return {t.get("uniqueName", "") for t in doc["pipeline"]["components"]["transforms"].values()}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny trained student (seconds), local: propagate's dry run reads only its fingerprint."""
    root = tmp_path_factory.mktemp("model-w")
    ps = sample_paragraphs(EXAMPLES / "jats")
    write_workdir(Workdir.of(root), ps, ps[::2])
    assert cli(["train", "--workdir", str(root), *TRAIN]) == 0
    return str(root / "model")


@pytest.mark.parametrize("preset", ["dataflow", "dataflow-gpu"])
def test_parse_dry_run_writes_the_dataflow_job_offline(gcs_workdir: str, tmp_path: Path, preset: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    secrets.register(SECRET)
    before = _listing(gcs_workdir)
    out = tmp_path / "job.json"
    rc = cli(["parse", str(EXAMPLES / "jats"), "--workdir", gcs_workdir, *_dataflow(preset), "--dry-run", str(out)])
    assert rc == 0
    assert _listing(gcs_workdir) == before  # nothing written to W, not even a log
    text = out.read_text()
    assert SECRET not in text
    doc = json.loads(text)
    assert doc["runner"] == "DataflowRunner"
    assert {"ParseArticles", "Write"} <= {n.split("/")[0] for n in _transforms(doc)}
    env = doc["job"]["environment"]
    assert IMAGE in text  # the SDK container every worker starts
    pool = env["workerPools"][0]
    if preset == "dataflow-gpu":
        assert pool["machineType"].startswith("g2-")
        assert any(o.startswith("worker_accelerator=type:nvidia-l4") for o in env["serviceOptions"])
    else:
        assert pool["machineType"] == "n2-standard-4"
        assert not env.get("serviceOptions")
    assert env["sdkPipelineOptions"]["options"]["staging_location"].startswith("gs://my-temp-bucket/tmp/staging")


def test_propagate_dry_run_writes_the_gpu_job(gcs_workdir: str, tmp_path: Path, model_dir: str) -> None:
    ps = sample_paragraphs(EXAMPLES / "jats")
    write_workdir(Workdir.of(gcs_workdir), ps, [])
    before = _listing(gcs_workdir)
    out = tmp_path / "job.json"
    rc = cli(["propagate", "--workdir", gcs_workdir, "--model-dir", model_dir, *_dataflow("dataflow-gpu"),
              "--dry-run", str(out)])
    assert rc == 0
    assert _listing(gcs_workdir) == before
    doc = json.loads(out.read_text())
    assert any(n.startswith("Propagate/") and "RunInference" in n for n in _transforms(doc))
    env = doc["job"]["environment"]
    assert env["workerPools"][0]["machineType"] == "g2-standard-8"
    assert "no_use_multiple_sdk_containers" in env["experiments"]


def test_a_bad_bucket_name_is_named_before_any_timeout(tmp_path: Path) -> None:
    """The issue's command: `gs://b/tmp` is not a valid bucket (3-63 characters), so Beam looked for a
    default staging bucket on GCS (a 120-second timeout offline). Now: an error naming the flag, at once."""
    argv = ["parse", str(EXAMPLES / "jats"), "--workdir", str(tmp_path / "w"), "--runner=DataflowRunner",
            "--project", "p", "--region", "us-central1", "--temp_location", "gs://b/tmp",
            "--staging_location", "gs://b/staging", "--sdk_container_image", IMAGE,
            "--dry-run", str(tmp_path / "job.json")]
    assert cli(argv) == 2
    assert not (tmp_path / "job.json").exists() and not (tmp_path / "w").exists()


def test_dry_run_on_a_local_runner_writes_the_portable_pipeline(tmp_path: Path, capsys) -> None:
    out = tmp_path / "job.json"
    assert cli(["parse", str(EXAMPLES / "jats"), "--workdir", str(tmp_path / "w"), "--dry-run", str(out)]) == 0
    assert not (tmp_path / "w").exists()
    doc = json.loads(out.read_text())
    assert doc["runner"] == "DirectRunner" and "ParseArticles" in {n.split("/")[0] for n in _transforms(doc)}
    assert re.search(r"dry run: wrote the DirectRunner job to .*job\.json", capsys.readouterr().out)


def test_run_dry_run_writes_every_beam_steps_job(tmp_path: Path, capsys) -> None:
    """`pmc-curate run --dry-run FILE`: the plan is printed; each Beam step that would run is built (parse)
    or says why it cannot be yet (propagate needs the model a later step makes); W is not created."""
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"workdir: {tmp_path / 'w'}\nsteps:\n  parse: {{inputs: [{EXAMPLES / 'jats'}]}}\n"
                   "  sample: {size: 10}\n  propagate: {batch_size: 4}\n")
    out = tmp_path / "jobs.json"
    assert cli(["run", "--config", str(cfg), "--dry-run", str(out)]) == 0
    assert not (tmp_path / "w").exists()
    jobs = json.loads(out.read_text())
    assert set(jobs) == {"parse", "propagate"}  # the Beam steps; sample runs on DuckDB
    assert "ParseArticles" in {n.split("/")[0] for n in _transforms(jobs["parse"])}
    assert "run `pmc-curate parse` first" in jobs["propagate"]["not_built"]
    assert "[parse] would run" in capsys.readouterr().out
