"""What the flow records per step and how it decides to redo one: fingerprints of the files a step reads
and writes (pipeline.storage.fingerprint: names, sizes, versions), its configuration as recorded, and
the markers W/_stages/<step>.json.

A step is skipped when its marker says finished with the same configuration and the same inputs, and
its outputs are still there (why_redo gives the reason otherwise).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.core import secrets, storage
from pipeline.core.errors import ConfigError
from pipeline.core.storage import Location
from pipeline.core.workdir import Workdir
from pipeline.flow.config import PreparedStep
from pipeline.flow.lock import alive

MARKER_VERSION = 1

# What each stage reads and writes, as globs relative to the work directory (`{arg}` is filled from
# the step's parsed arguments). Inputs decide whether a finished step is still valid; outputs are
# counted into the marker and must still exist for the step to be skipped.
STAGE_IO: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "parse": ((), ("articles/*.parquet", "paragraphs/*.parquet", "rejects/parse-*.parquet")),
    "sample": (("articles/*.parquet", "paragraphs/*.parquet"), ("sample/*.parquet",)),
    "annotate": (("sample/*.parquet",), ("annotations/*.parquet", "rejects/annotate-*.parquet")),
    "train": (("annotations/*.parquet", "paragraphs/*.parquet"), ("model/**",)),
    "evaluate": (("model/**", "annotations/*.parquet"), ("reports/classifier*",)),
    "propagate": (("model/**", "paragraphs/*.parquet"), ("labels/*.parquet", "rejects/propagate-*.parquet")),
    "curate": (("articles/*.parquet", "paragraphs/*.parquet", "{labels}/*.parquet"), ("subsets/{recipe_name}/**",)),
    "report": (("articles/*.parquet", "paragraphs/*.parquet", "{labels}/*.parquet", "subsets/**"), ("reports/index.md",)),
}

# Arguments whose values name input files outside the work directory: fingerprinted like tables.
INPUT_ARGS: dict[str, tuple[str, ...]] = {"parse": ("inputs", "input"), "curate": ("recipe",)}

# Arguments that change how fast a step runs, never what it writes: a change does not redo the step.
NOT_CONFIG = frozenset({"workdir", "verbose", "concurrency", "progress", "no_progress", "threads",
                        "torch_threads", "memory_limit", "temp_directory"})


def glob_files(root: Location, pattern: str) -> list[Location]:
    """Files under root matching a glob relative to it (`subsets/**`, `labels/*.parquet`)."""
    return root.glob(pattern)


def _input_paths(value: Any) -> list[Location]:
    """Files named by an input argument (files, directories, globs) on any accepted filesystem.

    The root of a PMC Cloud layout (s3://pmc-oa-opendata/ or a mirror) is fingerprinted by what indexes
    it, never by listing its ~50M objects: the newest inventory manifest, else the `metadata/*.json`
    objects (each version's JSON embeds the MD5 of all its files, so any change to a version changes it).
    """
    from pipeline.sources import pmc_cloud

    out: list[Location] = []
    for v in value if isinstance(value, list | tuple) else [value]:
        spec = str(v)
        if pmc_cloud.is_cloud_layout(spec):
            root = Location(spec.rstrip("/") or spec)
            manifests = pmc_cloud.find_manifests(root)
            out += manifests[-1:] if manifests else (root / "metadata").glob("*.json")
            continue
        out += storage.expand(spec)
    return out


def _fmt(pattern: str, args: argparse.Namespace) -> str:
    fields = dict(vars(args))
    recipe = fields.get("recipe")
    fields["recipe_name"] = fields.get("name") or (Path(str(recipe)).stem if recipe else "*")
    fields.setdefault("labels", "labels")  # curate/report --labels: the student's labels or the teacher's
    try:
        return pattern.format(**fields)
    except (KeyError, IndexError):
        return pattern


def step_inputs(prep: PreparedStep, wd: Workdir) -> dict[str, Any]:
    """Fingerprints of everything the step reads."""
    assert prep.args is not None
    reads, _ = STAGE_IO.get(prep.step.command, ((), ()))
    out: dict[str, Any] = {}
    for pattern in reads:
        pat = _fmt(pattern, prep.args)
        out[pat] = storage.fingerprint(glob_files(wd.root, pat), wd.root)
    for arg in INPUT_ARGS.get(prep.step.command, ()):
        value = getattr(prep.args, arg, None)
        if value:
            out[f"arg:{arg}"] = {"value": [str(v) for v in value] if isinstance(value, list | tuple) else str(value),
                                 **storage.fingerprint(_input_paths(value))}
    return out


def count_rows(paths: Sequence[Location]) -> int | None:
    """Rows of a set of Parquet files, from their footers (no data read)."""
    parquet = [storage.as_location(p) for p in paths if str(p).endswith(".parquet")]
    if not parquet:
        return None
    return sum(storage.read_parquet_metadata(p).num_rows for p in parquet)


def step_outputs(prep: PreparedStep, wd: Workdir) -> dict[str, Any]:
    """Fingerprints and row counts of everything the step wrote."""
    assert prep.args is not None
    _, writes = STAGE_IO.get(prep.step.command, ((), ()))
    out: dict[str, Any] = {}
    for pattern in writes:
        pat = _fmt(pattern, prep.args)
        files = glob_files(wd.root, pat)
        out[pat] = {**storage.fingerprint(files, wd.root), "rows": count_rows(files)}
    return out


def step_config(args: argparse.Namespace, command: str = "") -> dict[str, Any]:
    """The step's configuration as recorded (JSON-safe), without the knobs that only change speed.

    Local input paths are made absolute, so `examples/jats` typed in the repository and the same folder
    given as an absolute path are the same configuration (their files are fingerprinted anyway).
    """
    config = {k: _json_safe(v) for k, v in sorted(vars(args).items()) if k not in NOT_CONFIG}
    for arg in INPUT_ARGS.get(command, ()):
        value = config.get(arg)
        if isinstance(value, list):
            config[arg] = [_abs(v) for v in value]
        elif isinstance(value, str):
            config[arg] = _abs(value)
    return config


def _abs(path: Any) -> Any:
    p = str(path)
    return p if "://" in p or not os.path.exists(p) else os.path.abspath(p)


def _json_safe(v: Any) -> Any:
    if isinstance(v, str | int | float | bool) or v is None:
        return v
    if isinstance(v, list | tuple):
        return [_json_safe(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _json_safe(x) for k, x in v.items()}
    return str(v)


def config_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- markers


def marker_path(wd: Workdir, step: str) -> Location:
    return wd.stages / f"{step}.json"


def read_marker(wd: Workdir, step: str) -> dict[str, Any] | None:
    """A step's marker, or None when absent or unreadable (an unreadable marker means: redo)."""
    p = marker_path(wd, step)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_marker(wd: Workdir, step: str, marker: Mapping[str, Any]) -> None:
    """Write whole (temp file + rename locally, one PUT on object stores), so a kill while writing never
    leaves a half marker that reads as finished. Secrets on command lines are masked."""
    text = secrets.redact(json.dumps(marker, indent=2, sort_keys=False) + "\n")
    marker_path(wd, step).write_text(text)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def why_redo(prep: PreparedStep, wd: Workdir) -> str | None:
    """None when the step's marker proves it finished on the same inputs and config; else the reason."""
    assert prep.args is not None
    marker = read_marker(wd, prep.step.name)
    if marker is None:
        return "not run before"
    if marker.get("status") == "running":
        if marker.get("host") == socket.gethostname() and marker.get("pid") != os.getpid() and alive(marker.get("pid")):
            raise ConfigError(f"step {prep.step.name} is being run by another process (pid {marker['pid']}) "
                              f"in {wd.root}; wait for it or stop it first")
        return "last run was interrupted"
    if marker.get("status") != "finished":
        return f"last run {marker.get('status', 'did not record its state')}"
    if marker.get("command") != prep.step.command or marker.get("config_hash") != config_hash(step_config(prep.args, prep.step.command)):
        return "configuration changed"
    now = step_inputs(prep, wd)
    before = marker.get("inputs", {})
    for key, fp in now.items():
        if before.get(key, {}).get("digest") != fp.get("digest"):
            return f"input {key} changed"
    for key, fp in marker.get("outputs", {}).items():
        if fp.get("files") and not glob_files(wd.root, key):
            return f"output {key} is gone"
    return None
