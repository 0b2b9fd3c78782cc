"""Every stage in one `pmc-curate run`, from the demo's own configuration file.

The demo's configuration (examples/demo.yaml) is used as it is, with two changes: the input is a few
real articles, and the teacher is the fake OpenAI-protocol server over a real socket (with faults of
its own to inject) instead of the demo's keyword-rule teacher (the full demo test runs that one).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import flow
from pipeline.core.workdir import Workdir
from pipeline.flow import demo
from pipeline.flow import status as flow_status
from tests.fakes.openai_server import FakeOpenAIServer


@pytest.mark.slow
@pytest.mark.shared_data
def test_every_stage_from_the_demo_config_then_resume_after_a_failure(tmp_path: Path, shared_sample: Path,
                                                                     monkeypatch) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    for p in sorted(shared_sample.glob("*.xml"))[:14]:
        (inp / p.name).write_bytes(p.read_bytes())
    cfg = demo.demo_config(str(tmp_path / "w"))
    wd = Workdir.of(cfg.workdir)
    for step in cfg.steps:
        if step.command == "parse":
            step.flags["inputs"] = [str(inp)]
        if step.command == "train":
            step.flags.update(max_length=64)
    available = list(cfg.steps)
    with FakeOpenAIServer(latency_s=0.0) as server:
        for step in cfg.steps:
            if step.command == "annotate":
                step.flags.pop("teacher", None)  # the demo's offline teacher (keyword rules) gives way to the endpoint
                step.flags.update(base_url=server.url, model="fake-teacher", concurrency=8)
        # make the propagate step fail once, as a lost worker would
        import pipeline.stages.propagate.stage as prop

        real = prop.run

        def lost_worker(args, beam_argv):
            raise RuntimeError("worker lost")

        monkeypatch.setattr(prop, "run", lost_worker)
        with pytest.raises(RuntimeError, match="worker lost"):
            flow.run_flow(cfg, echo=lambda s: None)
        done_before = {s.name: flow.read_marker(wd, s.name) for s in available}
        assert done_before["train"]["status"] == "finished"
        assert done_before["propagate"]["status"] == "failed"
        assert all(done_before[s.name] is None for s in available[available.index(
            next(s for s in available if s.name == "propagate")) + 1:])

        monkeypatch.setattr(prop, "run", real)
        log: list[str] = []
        assert flow.run_flow(cfg, echo=log.append) == 0
        paid = sum(server.paid.values())
    for name in ("parse", "sample", "annotate", "train"):
        assert flow.read_marker(wd, name) == done_before[name]  # not redone
        assert any(line.startswith(f"[{name}] finished") and "skipped" in line for line in log)
    assert paid == flow.read_marker(wd, "sample")["outputs"]["sample/*.parquet"]["rows"]  # no call paid twice
    entries = {e["step"]: e for e in flow_status.collect(wd)}
    for s in available:
        assert entries[s.name]["state"] == "finished", (s.name, entries[s.name])
    n_par = entries["parse"]["rows"]["paragraphs/*.parquet"]
    assert entries["propagate"]["rows"]["labels/*.parquet"] == n_par
    assert (wd.root / "subsets" / "be-base").is_dir() and (wd.root / "reports" / "index.md").is_file()
    # the demo's export: the be-base subset as OLMo shards, read back whole
    import json

    from pipeline.shards import read_documents

    exported = json.loads((wd.root / "exports" / "be-base" / "olmo" / "manifest.json").read_text())
    back = list(read_documents(wd.root.local / "exports" / "be-base" / "olmo" / "x1", format="olmo"))
    assert exported["documents"] == len(back) > 0 and exported["tokens"] == sum(len(t) for t, _ in back)
