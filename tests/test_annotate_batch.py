"""`annotate --batch openai`: the OpenAI Batch API path against the fake server's batch endpoints.

Every sampled paragraph ends as one annotation or one reject, as the online path ends it; a killed run
resumes the same batches (counted: POST /v1/batches) and never asks again for a finished call.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.core.workdir import Workdir
from pipeline.stages.annotate.transforms import sample_items
from pipeline.teacher.batch import batch_estimate, run_openai_batches
from pipeline.teacher.batch_openai import OpenAIBatches
from pipeline.teacher.batch_requests import BatchConfig, SampleIndex, pending_requests, split_requests
from pipeline.teacher.batch_results import Ingester
from pipeline.teacher.batch_state import BatchStore
from pipeline.teacher.cache import RequestCache
from pipeline.teacher.preflight import estimate, import_checkpoints
from pipeline.teacher.prompt import load_prompt
from tests.annotate_helpers import key_of, make_sample
from tests.batch_helpers import FAST, input_lines, run_batch, teacher
from tests.fakes.openai_server import FakeOpenAIServer
from tests.test_annotate import FAST as ONLINE_FAST
from tests.test_annotate import outputs

REPLY_FAULTS = {
    "fschema": ["schema", "ok"], "fnotjson": ["notjson", "ok"], "flength": ["length", "ok"], "fempty": ["empty", "ok"],
    "xschema": ["schema"] * 3, "xnotjson": ["notjson"] * 3, "xlength": ["length"] * 3,
}  # fmt: skip
COMPARED = ("document_type", "domain", "educational_score", "teacher_model", "prompt_version", "prompt_hash",
            "input_hash", "prompt_tokens", "completion_tokens", "attempts")  # fmt: skip


def test_batch_gives_the_online_paths_rows_and_sends_its_bodies(tmp_path: Path) -> None:
    keys = [*REPLY_FAULTS, "plain1", "plain2", "plain3"]
    online, batch = tmp_path / "online", tmp_path / "batch"
    make_sample(online, keys)
    make_sample(batch, keys)
    with FakeOpenAIServer(plan={k: list(v) for k, v in REPLY_FAULTS.items()}) as server:
        assert main(["annotate", "--workdir", str(online), "--base-url", server.url, "--model", "teacher-x",
                     *ONLINE_FAST]) == 0  # fmt: skip
        online_bodies = {key_of_body(b): b for b in server.bodies if b["temperature"] == 0.0}
    with FakeOpenAIServer(plan={k: list(v) for k, v in REPLY_FAULTS.items()}) as server:
        run = run_batch(batch, server.url)
        lines = input_lines(server)
        assert server.batch.creates == 3  # the first ask, then one retry round per invalid reply (x2)
    a_on, r_on = outputs(online)
    a_b, r_b = outputs(batch)
    assert len(a_b) + len(r_b) == len(keys) and run.summary["complete"]
    assert {i: {c: r[c] for c in COMPARED} for i, r in a_b.items()} == {i: {c: r[c] for c in COMPARED} for i, r in a_on.items()}
    assert {i: (r["reason"], r["detail"], r["raw"]) for i, r in r_b.items()} == \
           {i: (r["reason"], r["detail"], r["raw"]) for i, r in r_on.items()}  # fmt: skip
    assert run.summary["rejected"] == {"reply_schema": 1, "reply_not_json": 1, "reply_truncated": 1}
    # the first ask of each paragraph is byte for byte the online request body
    first = {key_of_body(x["body"]): x["body"] for x in lines if x["custom_id"].endswith("-a0")}
    assert first == online_bodies
    retries = [x for x in lines if not x["custom_id"].endswith("-a0")]
    assert retries and all(x["body"]["temperature"] == load_prompt().params["retry_temperature"] for x in retries)
    # tokens come from the returned usage of every reply paid for (the fake bills characters / 4)
    billed = sum(sum(len(m["content"]) for m in x["body"]["messages"]) // 4 for x in lines)
    assert run.summary["prompt_tokens"] == billed and run.summary["cost"] == 0.0


def key_of_body(body: dict) -> str:
    return FakeOpenAIServer.key_of(body)


def _submit_only(root: Path, url: str, per_file: int, ingest_first: bool) -> list[str]:
    """A run killed after it submitted every batch (and, with `ingest_first`, after it ingested the first)."""
    wd = Workdir.of(root)
    t = teacher(root, url)
    prompt = load_prompt()
    index = SampleIndex.build(sample_items(wd), prompt, t.model)
    cp = import_checkpoints(t)
    cache = RequestCache(t.cache_path)
    store = BatchStore(wd.cache / "batches")
    driver = OpenAIBatches(t, store, BatchConfig(poll_s=0.01))
    parts = [driver.submit(index, p, 0.0) for p in split_requests(pending_requests(index, cache), per_file)]
    if ingest_first:
        assert driver.wait(parts[:1])
        Ingester(index, cache, cp).ingest(driver.download(parts[0]))
        parts[0].ingested = True
        store.save(parts[0])
    cache.close()
    driver.close()
    return [p.batch_id or "" for p in parts]


@pytest.mark.parametrize("ingest_first", [False, True], ids=["after-submit", "after-first-ingest"])
def test_a_killed_run_resumes_its_batches_from_a_fresh_machine(tmp_path: Path, ingest_first: bool) -> None:
    keys = [f"k{i}" for i in range(7)]
    make_sample(tmp_path, keys)
    with FakeOpenAIServer() as server:
        ids = _submit_only(tmp_path, server.url, per_file=3, ingest_first=ingest_first)
        assert server.batch.creates == 3
        # every in-memory object is gone; another machine, an empty local disk, the same work directory
        run = run_batch(tmp_path, server.url, machine=tmp_path / "machine2")
        assert server.batch.creates == 3, "a batch was submitted twice"
        assert run.summary["batches_resumed"] == (2 if ingest_first else 3) and run.summary["batches_submitted"] == 0
        assert server.batch.lines == {k: 1 for k in keys}  # nothing asked twice
        assert set(server.batch.batches) == set(ids)
        # the same cache serves the online path: a later online run pays for nothing
        assert main(["annotate", "--workdir", str(tmp_path), "--base-url", server.url, "--model", "teacher-x",
                     *ONLINE_FAST]) == 0  # fmt: skip
        assert sum(server.requests.values()) == 0
    ann, rej = outputs(tmp_path)
    assert len(ann) == len(keys) and not rej


def test_a_batch_created_but_not_recorded_is_found_by_its_metadata(tmp_path: Path) -> None:
    """Killed between batches.create and the write of its id: the resume finds the batch, creates none."""
    make_sample(tmp_path, ["m1", "m2"])
    with FakeOpenAIServer() as server:
        _submit_only(tmp_path, server.url, per_file=10, ingest_first=False)
        store = BatchStore(Workdir.of(tmp_path).cache / "batches")
        (part,) = store.parts()
        part.batch_id, part.status = None, "uploaded"
        store.save(part)
        run = run_batch(tmp_path, server.url, machine=tmp_path / "machine2")
        assert server.batch.creates == 1 and run.summary["complete"]
        assert server.batch.lines == {"m1": 1, "m2": 1}


def test_an_expired_batch_is_resubmitted_for_what_it_did_not_run(tmp_path: Path) -> None:
    keys = [f"e{i}" for i in range(6)]
    make_sample(tmp_path, keys)
    with FakeOpenAIServer(batch_plan=["expire"]) as server:
        run = run_batch(tmp_path, server.url)
        assert server.batch.creates == 2 and run.summary["requests_submitted"] == 6 + 3
        assert server.batch.lines == {k: 1 for k in keys}
    ann, rej = outputs(tmp_path)
    assert len(ann) == 6 and not rej


@pytest.mark.parametrize("fault,reason", [("fail", "batch_failed"), ("cancel", "batch_cancelled")])
def test_a_failed_or_cancelled_batch_rejects_what_it_did_not_run_and_a_rerun_asks_again(
    tmp_path: Path, fault: str, reason: str
) -> None:
    keys = [f"f{i}" for i in range(4)]
    make_sample(tmp_path, keys)
    with FakeOpenAIServer(batch_plan=[fault]) as server:
        run = run_batch(tmp_path, server.url)
        ann, rej = outputs(tmp_path)
        n_done = 0 if fault == "fail" else 2
        assert len(ann) == n_done and {r["reason"] for r in rej.values()} == {reason} and len(rej) == 4 - n_done
        assert run.summary["complete"] and server.batch.creates == 1
        if fault == "fail":
            assert "injected batch failure" in next(iter(rej.values()))["detail"]
        run = run_batch(tmp_path, server.url)  # not cached: the next run asks again, only for those
        assert server.batch.creates == 2 and run.summary["requests_submitted"] == 4 - n_done
    ann, rej = outputs(tmp_path)
    assert len(ann) == 4 and not rej


def test_error_lines_duplicates_truncation_and_missing_lines(tmp_path: Path) -> None:
    plan = {"bad": ["400"], "flaky": ["500", "ok"], "down": ["503"] * 3, "twice": ["dup"], "gone": ["missing"]}
    keys = [*plan, "p1", "p2", "p3"]
    make_sample(tmp_path, keys)
    with FakeOpenAIServer(plan=plan, batch_plan=["truncate"]) as server:
        run = run_batch(tmp_path, server.url)
        s = run.summary
    ann, rej = outputs(tmp_path)
    assert len(ann) + len(rej) == len(keys) and s["complete"]
    assert {key_of(i): r["reason"] for i, r in rej.items()} == {"bad": "batch_request_error", "down": "batch_request_error"}
    assert "HTTP 400" in rej["PMCbad/sec[0]/p[0]"]["detail"]
    assert server.batch.lines["down"] == 3  # the first ask + max_resubmits (2)
    assert server.batch.lines["flaky"] == 2 and server.batch.lines["twice"] == 1
    assert s["dropped_lines"] == {"duplicate_result": 1, "malformed_result_line": 1}
    assert any("truncated last line" in e for e in s["dropped_examples"])
    # the paragraph whose line was cut off and the one with no line were asked again, and no other
    assert sum(server.batch.lines.values()) == len(keys) + 1 + 2 + 1  # flaky, down twice, the cut-off line


def test_max_cost_is_honoured_before_submitting_at_the_batch_price(tmp_path: Path) -> None:
    keys = [f"c{i}" for i in range(6)]
    make_sample(tmp_path, keys)
    wd = Workdir.of(tmp_path)
    with FakeOpenAIServer() as server:
        t = teacher(tmp_path, server.url, price_in=1000.0, price_out=1000.0)
        items = sample_items(wd)
        full = estimate(items, load_prompt(), t)
        est = batch_estimate(items, load_prompt(), t, BatchConfig(discount=0.5))
        assert est.cost == pytest.approx(full.cost * 0.5) and est.n_calls == 6
        per_call = est.cost / 6
        run = run_batch(tmp_path, server.url, price_in=1000.0, price_out=1000.0, max_cost=per_call * 2.5)
        assert run.summary["requests_submitted"] == 2 and run.summary["skip_reasons"] == {"budget": 4}
        assert not run.summary["complete"] and 0 < run.summary["cost"] <= per_call * 2.5
        run = run_batch(tmp_path, server.url, price_in=1000.0, price_out=1000.0)
        assert run.summary["requests_submitted"] == 4 and run.summary["complete"]
        assert server.batch.lines == {k: 1 for k in keys}
        # a mix of online and batch runs pays once: the online path finds everything in the cache
        assert main(["annotate", "--workdir", str(tmp_path), "--base-url", server.url, "--model", "teacher-x",
                     *ONLINE_FAST]) == 0  # fmt: skip
        assert sum(server.requests.values()) == 0


def test_online_first_then_batch_asks_only_for_the_rest(tmp_path: Path) -> None:
    make_sample(tmp_path, ["o1", "o2"])
    with FakeOpenAIServer() as server:
        assert main(["annotate", "--workdir", str(tmp_path), "--base-url", server.url, "--model", "teacher-x",
                     *ONLINE_FAST]) == 0  # fmt: skip
    make_sample(tmp_path, ["o1", "o2", "o3", "o4"])  # the sample grew
    with FakeOpenAIServer() as server:
        run = run_batch(tmp_path, server.url, machine=tmp_path / "machine2")
        assert server.batch.lines == {"o3": 1, "o4": 1} and run.summary["complete"]
    ann, _ = outputs(tmp_path)
    assert len(ann) == 4


def test_the_state_and_checkpoints_live_on_an_object_store(tmp_path: Path, s3_workdir: str) -> None:
    """W on s3://: a run killed after submitting resumes from another machine through the bucket alone."""
    make_sample(s3_workdir, ["s1", "s2", "s3"])
    with FakeOpenAIServer() as server:
        wd = Workdir.of(s3_workdir)
        t = teacher(s3_workdir, server.url, machine=tmp_path / "machine1")
        index = SampleIndex.build(sample_items(wd), load_prompt(), t.model)
        cache = RequestCache(t.cache_path)
        driver = OpenAIBatches(t, BatchStore(wd.cache / "batches"), FAST)
        driver.submit(index, pending_requests(index, cache), 0.0)
        cache.close()
        driver.close()
        assert [p.name for p in (wd.cache / "batches").glob("*.json")]
        t2 = teacher(s3_workdir, server.url, machine=tmp_path / "machine2")
        run = run_openai_batches(sample_items(wd), load_prompt(), t2, wd.cache / "batches", FAST)
        assert server.batch.creates == 1 and run.summary["annotated"] == 3
        assert (wd.cache / "teacher").glob("*.parquet"), "the results were not checkpointed to the bucket"


def test_a_batch_still_running_after_the_wait_is_polled_again_by_the_next_run(tmp_path: Path) -> None:
    keys = ["w1", "w2", "w3"]
    make_sample(tmp_path, keys)
    with FakeOpenAIServer(batch_polls=1000) as server:
        run = run_batch(tmp_path, server.url, config=BatchConfig(poll_s=0.01, poll_max_s=0.02, max_wait_s=0.2))
        assert run.summary["skip_reasons"] == {"batch_in_progress": 3} and not run.summary["complete"]
        assert server.batch.creates == 1 and not server.batch.lines
        make_sample(tmp_path, [*keys, "w4"])  # meanwhile the sample grew: only the new paragraph is asked for
        server.batch.polls = 1
        run = run_batch(tmp_path, server.url)
        assert run.summary["complete"] and run.summary["batches_resumed"] == 1 and run.summary["batches_submitted"] == 1
        assert server.batch.creates == 2 and server.batch.lines == {k: 1 for k in [*keys, "w4"]}
