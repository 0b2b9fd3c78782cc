"""Helpers for the batch tests: a teacher config on a work directory, and running the batch path end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.core.workdir import Workdir
from pipeline.stages.annotate.transforms import sample_items
from pipeline.teacher.batch import BatchRun, run_openai_batches, write_outputs
from pipeline.teacher.batch_requests import BatchConfig
from pipeline.teacher.config import TeacherConfig
from pipeline.teacher.prompt import load_prompt

FAST = BatchConfig(poll_s=0.01, poll_max_s=0.05)


def teacher(root: str | Path, url: str, machine: Path | None = None, model: str = "teacher-x", **kw: Any) -> TeacherConfig:
    """The annotate stage's teacher settings for W = root; `machine` = another machine's empty local disk."""
    wd = Workdir.of(root)
    local = machine if machine is not None else wd.local_cache
    return TeacherConfig(base_url=url, model=model, cache_path=str(local / "teacher.sqlite"),
                         checkpoint_dir=str(wd.cache / "teacher"), progress=False, **kw)  # fmt: skip


def run_batch(root: str | Path, url: str, config: BatchConfig = FAST, machine: Path | None = None, **kw: Any) -> BatchRun:
    """The whole `annotate --batch openai` flow on W = root, outputs written as the online path writes them."""
    wd = Workdir.of(root)
    t = teacher(root, url, machine, **kw)
    prompt = load_prompt()
    run = run_openai_batches(sample_items(wd), prompt, t, wd.cache / "batches", config)
    write_outputs(run.outcomes, wd.annotations, wd.rejects, t.model, prompt)
    return run


def input_lines(server: Any) -> list[dict[str, Any]]:
    """Every request line of every batch file uploaded to the fake server, decoded."""
    out = []
    for fid, meta in server.batch.files.items():
        if meta["purpose"] == "batch":
            out += [json.loads(x) for x in server.batch.data[fid].splitlines() if x.strip()]
    return out
