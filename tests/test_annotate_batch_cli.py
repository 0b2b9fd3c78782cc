"""`pmc-curate annotate --batch openai|jsonl` and `--batch-results` through the command line, against the
fake server's Batch API: the same counts as the online path, a killed run resumed without a second
POST /v1/batches, the JSONL round trip, and results of another sample refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.core import options
from pipeline.stages.annotate.stage import Config
from tests.annotate_helpers import make_sample
from tests.batch_helpers import vllm_results
from tests.fakes.openai_server import FakeOpenAIServer
from tests.test_annotate import FAST as ONLINE_FAST
from tests.test_annotate import outputs

REPO = Path(__file__).resolve().parent.parent
POLL = ["--poll-seconds", "0.01", "--no-progress"]
PLAN = {"fschema": ["schema", "ok"], "fnotjson": ["notjson", "ok"], "xschema": ["schema"] * 3,
        "xlength": ["length"] * 3}  # fmt: skip


def annotate(wd: Path, *extra: str, model: str = "teacher-x") -> int:
    return main(["annotate", "--workdir", str(wd), "--model", model, *extra])


def test_batch_openai_gives_the_online_counts_and_accounts_for_every_paragraph(tmp_path: Path, capsys) -> None:
    keys = [*PLAN, "p1", "p2", "p3"]
    online, batch = make_sample(tmp_path / "online", keys), make_sample(tmp_path / "batch", keys)
    with FakeOpenAIServer(plan={k: list(v) for k, v in PLAN.items()}) as server:
        assert annotate(tmp_path / "online", "--base-url", server.url, *ONLINE_FAST) == 0
    with FakeOpenAIServer(plan={k: list(v) for k, v in PLAN.items()}) as server:
        capsys.readouterr()
        # the estimate before any spend is at the batch price; --dry-run submits nothing
        assert annotate(tmp_path / "batch", "--base-url", server.url, "--batch", "openai", "--price-in", "2",
                        "--price-out", "8", "--dry-run", *POLL) == 0  # fmt: skip
        assert "at the batch price ($2.0/$8.0 per M tokens x 0.5)" in capsys.readouterr().out
        assert server.batch.creates == 0
        assert annotate(tmp_path / "batch", "--base-url", server.url, "--batch", "openai", "--price-in", "2",
                        "--price-out", "8", *POLL) == 0  # fmt: skip
        out = capsys.readouterr().out
        assert not server.requests, "the batch path made online calls"
    a_on, r_on = outputs(online.root.local)
    a_b, r_b = outputs(batch.root.local)
    assert len(a_b) + len(r_b) == len(keys)
    assert (len(a_b), sorted(r["reason"] for r in r_b.values())) == (len(a_on), sorted(r["reason"] for r in r_on.values()))
    assert {i: (r["document_type"], r["domain"], r["educational_score"]) for i, r in a_b.items()} == \
           {i: (r["document_type"], r["domain"], r["educational_score"]) for i, r in a_on.items()}  # fmt: skip
    assert f"annotated {len(a_b)}, rejected {len(r_b)}" in out and f"pending 0 of {len(keys)}" in out
    # tokens and cost from the returned usage, at the batch price
    tokens_in = int(out.split("new tokens in ")[1].split(" ")[0].replace(",", ""))
    tokens_out = int(out.split(" out ")[1].split(" ")[0].replace(",", ""))
    cost = float(out.split("cost $")[1].split(" ")[0])
    assert tokens_in > 0 and cost == pytest.approx((2 * tokens_in + 8 * tokens_out) / 1e6 * 0.5, abs=1e-4)


def test_max_cost_stops_before_submitting_and_the_next_run_resumes(tmp_path: Path, capsys) -> None:
    make_sample(tmp_path, [f"c{i}" for i in range(4)])
    price = ["--price-in", "1000", "--price-out", "1000"]
    with FakeOpenAIServer() as server:
        assert annotate(tmp_path, "--base-url", server.url, "--batch", "openai", *price, "--dry-run", *POLL) == 0
        est = float(capsys.readouterr().out.split("~$")[1].split(" ")[0].replace(",", ""))
        assert annotate(tmp_path, "--base-url", server.url, "--batch", "openai", *price, "--max-cost",
                        str(est / 4 * 1.5), *POLL) == 3  # fmt: skip
        out = capsys.readouterr().out
        assert "annotated 1, rejected 0 , pending 3 (budget: 3) of 4" in out
        assert annotate(tmp_path, "--base-url", server.url, "--batch", "openai", *price, *POLL) == 0
        assert server.batch.lines == {f"c{i}": 1 for i in range(4)}


def test_a_killed_batch_run_resumes_without_submitting_again(tmp_path: Path) -> None:
    """SIGKILL after the batches were submitted; the rerun (its local cache gone, as on another machine)
    polls the same batches: no second POST /v1/batches, no paragraph asked twice."""
    keys = [f"k{i}" for i in range(5)]
    wd = make_sample(tmp_path, keys)
    with FakeOpenAIServer(batch_polls=10**6) as server:  # the batches never finish while the first run lives
        cmd = [sys.executable, "-m", "pipeline.cli", "annotate", "--workdir", str(tmp_path), "--base-url", server.url,
               "--model", "teacher-x", "--batch", "openai", "--batch-max-requests", "2", *POLL]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while server.batch.creates < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(0.2)  # let it write the third batch id; a kill before that is covered by the metadata lookup
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL and server.batch.creates == 3
        for f in wd.local_cache.glob("teacher.sqlite*"):  # another machine: only the work directory is shared
            f.unlink()
        server.batch.polls = 1
        assert annotate(tmp_path, "--base-url", server.url, "--batch", "openai", *POLL) == 0
        assert server.batch.creates == 3, "a batch was submitted twice"
        assert server.batch.lines == {k: 1 for k in keys}
        # and the shared cache: an online run afterwards pays for nothing
        assert annotate(tmp_path, "--base-url", server.url, *ONLINE_FAST) == 0
        assert sum(server.requests.values()) == 0
    ann, rej = outputs(tmp_path)
    assert len(ann) == len(keys) and not rej


def test_max_wait_leaves_the_batches_running_and_exits_resumable(tmp_path: Path, capsys) -> None:
    make_sample(tmp_path, ["w1", "w2"])
    with FakeOpenAIServer(batch_polls=10**6) as server:
        assert annotate(tmp_path, "--base-url", server.url, "--batch", "openai", "--max-wait", "0.1", *POLL) == 3
        assert "pending 2 (batch_in_progress: 2) of 2" in capsys.readouterr().out
        server.batch.polls = 1
        assert annotate(tmp_path, "--base-url", server.url, "--batch", "openai", *POLL) == 0
        assert server.batch.creates == 1


def _results(wd: Path, out: Path, faults: dict[str, str] | None = None) -> Path:
    files = sorted((wd / "batches").glob("requests-*.jsonl"))
    assert files
    out.write_bytes(vllm_results(files, faults))
    return out


def test_jsonl_requests_then_batch_results(tmp_path: Path, capsys) -> None:
    keys = [f"j{i}" for i in range(5)]
    make_sample(tmp_path, keys)
    assert annotate(tmp_path, "--batch", "jsonl", "--batch-max-requests", "2") == 3  # awaiting the results
    out = capsys.readouterr().out
    assert "5 requests in 3 files" in out and "pending 5 (awaiting_results: 5) of 5" in out
    # a results file cut off in the middle of its last line: that paragraph stays pending
    res = _results(tmp_path, tmp_path / "results-0.jsonl")
    data = res.read_bytes()
    res.write_bytes(data[: len(data) - 40])
    assert annotate(tmp_path, "--batch-results", str(res)) == 3
    out = capsys.readouterr().out
    assert "annotated 4, rejected 0 , pending 1 (awaiting_results: 1) of 5" in out and "malformed_result_line" in out
    # asking again writes the one request left; its results complete the sample
    assert annotate(tmp_path, "--batch", "jsonl") == 3
    assert "1 requests in 1 files" in capsys.readouterr().out
    res2 = _results(tmp_path, tmp_path / "results-1.jsonl")
    assert annotate(tmp_path, "--batch-results", str(res), str(res2)) == 0  # re-ingesting res counts nothing twice
    assert "annotated 5, rejected 0 , pending 0 of 5" in capsys.readouterr().out
    ann, rej = outputs(tmp_path)
    assert len(ann) == 5 and not rej and {a["teacher_model"] for a in ann.values()} == {"teacher-x"}


def test_results_of_another_sample_are_refused_before_anything_is_written(tmp_path: Path, capsys) -> None:
    make_sample(tmp_path / "a", ["a1", "a2"])
    make_sample(tmp_path / "b", ["b1", "b2"])
    assert annotate(tmp_path / "b", "--batch", "jsonl") == 3
    foreign = _results(tmp_path / "b", tmp_path / "results-b.jsonl")
    capsys.readouterr()
    assert annotate(tmp_path / "a", "--batch-results", str(foreign)) == 2
    assert "none of its 2 lines is a request of this sample" in capsys.readouterr().err
    assert not (tmp_path / "a" / "annotations").exists() or not list((tmp_path / "a" / "annotations").glob("*"))
    # ... and results made for another model are refused the same way
    assert annotate(tmp_path / "b", "--batch-results", str(foreign), model="other-model") == 2


@pytest.mark.parametrize("argv,says", [
    (["--batch", "openai"], "--batch openai needs --base-url"),
    (["--batch", "jsonl", "--batch-results", "x.jsonl"], "one at a time"),
    (["--batch", "jsonl", "--teacher", "rules"], "--teacher chooses the offline teacher"),
    (["--batch", "jsonl", "--batch-discount", "0"], "--batch-discount must be in (0, 1]"),
])  # fmt: skip
def test_batch_flag_combinations_that_make_no_sense_are_refused(tmp_path: Path, capsys, argv, says) -> None:
    make_sample(tmp_path, ["z1"])
    assert annotate(tmp_path, *argv) == 2
    assert says in capsys.readouterr().err
    assert main(["annotate", "--workdir", str(tmp_path), "--batch", "jsonl"]) == 2  # no --model
    assert "needs --model" in capsys.readouterr().err


def test_a_flow_step_takes_the_same_keys() -> None:
    w = {"workdir": "w"}
    cfg = options.from_mapping(Config, {"batch": "openai", "base_url": "http://x/v1", "model": "m", "batch_discount": 0.5,
                                        "max_wait": 60, "price_in": 2.5, "max_cost": 10}, "steps.annotate", w)  # fmt: skip
    assert (cfg.batch, cfg.max_wait, cfg.price_in, cfg.max_cost) == ("openai", 60.0, 2.5, 10.0)
    assert options.from_mapping(Config, {"batch_results": "r.jsonl", "model": "m"}, "s", w).batch_results == ["r.jsonl"]
    with pytest.raises(Exception, match="batch"):
        options.from_mapping(Config, {"batch": "anthropic"}, "steps.annotate", w)
