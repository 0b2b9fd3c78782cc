"""`annotate --batch jsonl` and `--batch-results FILES`: request files for vLLM's run_batch, and its results.

The request lines must be accepted by the request model the fake server applies to the online API;
results in vLLM's output format ingest; results of another sample, unknown custom_ids and a truncated
file give clear errors or dropped lines, and nothing is lost.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.core.errors import ConfigError
from pipeline.core.workdir import Workdir
from pipeline.stages.annotate.transforms import sample_items
from pipeline.teacher.batch import ingest_results, write_jsonl_requests, write_outputs
from pipeline.teacher.batch_requests import BatchConfig
from pipeline.teacher.prompt import load_prompt
from tests.annotate_helpers import key_of, make_sample
from tests.batch_helpers import teacher, vllm_results
from tests.fakes.chat_models import BatchInputLine
from tests.fakes.openai_server import FakeOpenAIServer, default_labels
from tests.test_annotate import FAST as ONLINE_FAST
from tests.test_annotate import outputs

NOWHERE = "http://127.0.0.1:9/v1"  # the jsonl path never calls an endpoint


def _requests(root: Path, config: BatchConfig | None = None, model: str = "teacher-x"):
    t = teacher(root, NOWHERE, model=model)
    return write_jsonl_requests(sample_items(Workdir.of(root)), load_prompt(), t, Workdir.of(root).root / "batches",
                                config)  # fmt: skip


def _ingest(root: Path, files: list[Path], model: str = "teacher-x"):
    wd = Workdir.of(root)
    t = teacher(root, NOWHERE, model=model)
    run = ingest_results(sample_items(wd), load_prompt(), t, [str(f) for f in files])
    write_outputs(run.outcomes, wd.annotations, wd.rejects, t.model, load_prompt(), batch="jsonl")
    return run


def _results(root: Path, name: str, faults: dict[str, str] | None = None) -> Path:
    files = [Path(str(f)) for f in sorted((Workdir.of(root).root / "batches").glob("requests-*.jsonl"))]
    out = root / name
    out.write_bytes(vllm_results(files, faults))
    return out


def test_request_lines_pass_the_request_model_and_carry_the_online_body(tmp_path: Path) -> None:
    keys = [f"j{i}" for i in range(5)]
    make_sample(tmp_path / "batch", keys)
    make_sample(tmp_path / "online", keys)
    one = len(_requests(tmp_path / "batch").files[0].read_bytes()) // 5
    req = _requests(tmp_path / "batch", BatchConfig(max_requests_per_file=2, max_bytes_per_file=3 * one))
    assert len(req.files) == 3 and req.n_requests == 5 and req.estimate.n_calls == 5
    lines = [x for f in req.files for x in f.read_text(encoding="utf-8").splitlines()]
    parsed = [BatchInputLine.model_validate_json(x) for x in lines]  # the fake's request model, line by line
    assert len({p.custom_id for p in parsed}) == 5 and all(len(p.custom_id) <= 64 for p in parsed)
    manifest = json.loads((Workdir.of(tmp_path / "batch").root / "batches" / f"requests-{req.files[0].name.split('-')[1]}.manifest.json").read_text())
    assert manifest["requests"] == 5 and manifest["files"] == [f.name for f in req.files]
    with FakeOpenAIServer() as server:
        assert main(["annotate", "--workdir", str(tmp_path / "online"), "--base-url", server.url, "--model", "teacher-x",
                     *ONLINE_FAST]) == 0  # fmt: skip
        online = {server.key_of(b): b for b in server.bodies}
    assert {server.key_of(json.loads(x)["body"]): json.loads(x)["body"] for x in lines} == online
    # a body the request model refuses is caught: the check can fail
    bad = json.loads(lines[0])
    bad["body"]["messages"][0]["role"] = "wizard"
    with pytest.raises(ValueError):
        BatchInputLine.model_validate(bad)


def test_vllm_run_batch_results_ingest(tmp_path: Path) -> None:
    keys = [f"v{i}" for i in range(6)]
    make_sample(tmp_path, keys)
    _requests(tmp_path)
    results = _results(tmp_path, "out.jsonl", {"v4": "error_str", "v5": "error_obj"})
    run = _ingest(tmp_path, [results])
    ann, rej = outputs(tmp_path)
    assert len(ann) == 4 and run.summary["annotated"] == 4 and run.summary["complete"]
    for pid, a in ann.items():
        assert {k: a[k] for k in ("document_type", "domain", "educational_score")} == default_labels(key_of(pid), "teacher-x")
        assert a["teacher_model"] == "teacher-x" and a["attempts"] == 1 and a["prompt_tokens"] > 0
    assert {key_of(i): r["reason"] for i, r in rej.items()} == {"v4": "batch_request_error", "v5": "batch_request_error"}
    from pipeline.core import provenance  # the annotations name their teacher and how it was reached

    (rec,) = provenance.read_parquet_provenance(Workdir.of(tmp_path).files("annotations"))
    assert rec["model"] == "teacher-x" and rec["endpoint_kind"] == "JSONL batch (vLLM run_batch)"
    assert "does not support" in rej["PMCv4/sec[0]/p[0]"]["detail"] and "max_tokens" in rej["PMCv5/sec[0]/p[0]"]["detail"]
    usage = [json.loads(x)["response"]["body"]["usage"] for x in results.read_text().splitlines()[:4]]
    assert run.summary["prompt_tokens"] == sum(u["prompt_tokens"] for u in usage)
    # rejects of failed requests are not cached: the next request file asks for exactly those again
    assert _requests(tmp_path).n_requests == 2


def test_a_results_file_for_another_sample_or_model_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    make_sample(a, ["a1", "a2", "a3"])
    make_sample(b, ["b1", "b2", "b3"])
    _requests(a)
    results = _results(a, "a-results.jsonl")
    with pytest.raises(ConfigError, match="none of its 3 lines is a request of this sample.*not in this sample"):
        _ingest(b, [results])
    with pytest.raises(ConfigError, match="another prompt or model"):
        _ingest(a, [results], model="another-model")
    assert _requests(b).n_requests == 3 and _requests(a, model="another-model").n_requests == 3  # nothing ingested


def test_unknown_custom_ids_and_malformed_lines_are_dropped_and_reported(tmp_path: Path) -> None:
    make_sample(tmp_path, ["u1", "u2"])
    _requests(tmp_path)
    good = _results(tmp_path, "good.jsonl").read_text().splitlines()
    other = json.loads(good[0])
    other["custom_id"] = other["custom_id"].replace(other["custom_id"].split("-")[2], "0" * 24)
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("\n".join([good[0], json.dumps({**json.loads(good[1]), "custom_id": "request-1"}),
                                json.dumps(other), '{"no": "custom_id"}', good[1], good[1]]) + "\n")  # fmt: skip
    run = _ingest(tmp_path, [mixed])
    assert run.summary["annotated"] == 2 and run.summary["complete"]
    assert run.summary["dropped_lines"] == {"unknown_custom_id": 2, "malformed_result_line": 1, "duplicate_result": 1}
    assert any("request-1" in e and "not a custom_id pmc-curate writes" in e for e in run.summary["dropped_examples"])


def test_a_truncated_results_file_loses_nothing_and_ingesting_twice_counts_nothing_twice(tmp_path: Path) -> None:
    keys = [f"t{i}" for i in range(5)]
    make_sample(tmp_path, keys)
    _requests(tmp_path)
    full = _results(tmp_path, "full.jsonl").read_bytes()
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(full[: len(full) - 40])  # the copy stopped mid-line
    run = _ingest(tmp_path, [cut])
    assert run.summary["annotated"] == 4 and run.summary["skip_reasons"] == {"awaiting_results": 1}
    assert not run.summary["complete"] and run.summary["dropped_lines"] == {"malformed_result_line": 1}
    assert "truncated last line" in run.summary["dropped_examples"][0]
    ann, rej = outputs(tmp_path)
    assert len(ann) == 4 and not rej
    again = _requests(tmp_path)  # only the paragraph whose result was lost
    assert again.n_requests == 1
    rest = _results(tmp_path, "rest.jsonl")
    run = _ingest(tmp_path, [cut, rest])
    assert run.summary["complete"] and run.summary["new_annotated"] == 1 and run.summary["lines_already_ingested"] == 4
    run = _ingest(tmp_path, [cut, rest])  # the same files again: nothing new, no tokens counted twice
    assert run.summary["new_annotated"] == 0 and run.summary["prompt_tokens"] == 0 and run.summary["annotated"] == 5


def test_invalid_replies_are_asked_again_at_the_retry_temperature_then_rejected_as_online(tmp_path: Path) -> None:
    make_sample(tmp_path, ["ok1", "bad"])
    prompt = load_prompt()
    for attempt in range(prompt.max_reply_attempts):
        req = _requests(tmp_path)
        (line,) = [json.loads(x) for x in req.files[0].read_text().splitlines() if "PKEY-bad" in x] or [None]
        assert line["custom_id"].endswith(f"-a{attempt}")
        assert line["body"]["temperature"] == (prompt.params["temperature"] if attempt == 0 else prompt.params["retry_temperature"])
        run = _ingest(tmp_path, [_results(tmp_path, f"r{attempt}.jsonl", {"bad": "schema"})])
    assert _requests(tmp_path).n_requests == 0
    ann, rej = outputs(tmp_path)
    assert set(ann) == {"PMCok1/sec[0]/p[0]"} and rej["PMCbad/sec[0]/p[0]"]["reason"] == "reply_schema"
    assert rej["PMCbad/sec[0]/p[0]"]["detail"] == "reply still invalid after 3 attempts (reply_schema)"
    assert '"Essay"' in rej["PMCbad/sec[0]/p[0]"]["raw"] and run.summary["complete"]
