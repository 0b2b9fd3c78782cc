"""What the flow records per step and how it decides to redo one: fingerprints of the files a step reads
and writes (storage.fingerprint: names, sizes, versions; which files, the stage registry says), its
configuration as recorded (options.record), and the markers W/_stages/<step>.json.

A step is skipped when its marker says finished with the same configuration and the same inputs, and
its outputs are still there (why_redo gives the reason otherwise).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import string
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pipeline.core import options, secrets, storage, tables
from pipeline.core.errors import ConfigError
from pipeline.core.storage import Location
from pipeline.core.workdir import Workdir
from pipeline.flow.config import PreparedStep
from pipeline.flow.lock import alive

MARKER_VERSION = 1


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
        files = storage.expand(spec)
        if not files and "=" in spec:  # NAME=FILE (decontaminate --benchmark): the file after the first '='
            files = storage.expand(spec.split("=", 1)[1])
        out += files
    return out


def patterns(templates: Sequence[str], config: Any) -> list[str]:
    """A stage's read/write globs with `{field}` filled from its config; a field holding several values
    (curate --labels merged: two tables) gives one glob per value."""
    out: list[str] = []
    for t in templates:
        names = [n for _, n, _, _ in string.Formatter().parse(t) if n]
        if not names:
            out.append(t)
            continue
        value = getattr(config, names[0])
        for v in (value if isinstance(value, list | tuple) else [value]):
            out.append(t.replace("{" + names[0] + "}", str(v)))
    return out


def step_inputs(prep: PreparedStep, wd: Workdir) -> dict[str, Any]:
    """Fingerprints of everything the step reads."""
    out: dict[str, Any] = {}
    for pat in patterns(prep.stage.reads, prep.config):
        out[pat] = storage.fingerprint(glob_files(wd.root, pat), wd.root)
    for arg, value in options.input_paths(prep.config).items():
        out[f"arg:{arg}"] = {"value": [str(v) for v in value] if isinstance(value, list | tuple) else str(value),
                             **storage.fingerprint(_input_paths(value))}
    return out


def step_outputs(prep: PreparedStep, wd: Workdir) -> dict[str, Any]:
    """Fingerprints and row counts of everything the step wrote."""
    out: dict[str, Any] = {}
    for pat in patterns(prep.stage.writes, prep.config):
        files = glob_files(wd.root, pat)
        out[pat] = {**storage.fingerprint(files, wd.root), "rows": tables.count_rows(files),
                    "names": sorted(f.relative_to(wd.root) for f in files)}
    return out


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
    if marker.get("command") != prep.step.command or marker.get("config_hash") != config_hash(options.record(prep.config)):
        return "configuration changed"
    now = step_inputs(prep, wd)
    before = marker.get("inputs", {})
    for key, fp in now.items():
        if before.get(key, {}).get("digest") != fp.get("digest"):
            return f"input {key} changed"
    for key, fp in marker.get("outputs", {}).items():
        files = glob_files(wd.root, key)
        if fp.get("files") and not files:
            return f"output {key} is gone"
        # A file the step wrote and nobody replaced is gone (deleted, lost): the table is no longer what the
        # step wrote, and its readers would read part of it. (A table rewritten by hand is the user's:
        # its readers are redone, by their input fingerprints, the writer is not.)
        lost = sorted(set(fp.get("names") or ()) - {f.relative_to(wd.root) for f in files})
        if lost:
            return (f"output {key} lost {len(lost)} of the {fp.get('files')} files the step wrote "
                    f"({', '.join(lost[:3])}{', ...' if len(lost) > 3 else ''})")
    return None
