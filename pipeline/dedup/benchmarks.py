"""Benchmark files the user provides (MedQA, MedMCQA, PubMedQA, MMLU), read into one item type.

The project fetches nothing: `decontaminate --benchmark NAME=FILE` reads a local JSONL (`.jsonl`,
`.jsonl.gz`), JSON (`.json`: a list of objects, or an object keyed by id as in PubMedQA's
`ori_pqal.json`) or Parquet file. A small field mapping per format says where the question, the
answer and the ids are; several candidate names are tried in order, so the common releases of each
benchmark read without options:

| format | question | answer | ids |
|---|---|---|---|
| medqa | `question` | `answer` (text), else `options[answer_idx]` | `id` or the record number |
| medmcqa | `question` | `opa`..`opd` picked by `cop` counted from 0 (Hugging Face release) | `id` |
| medmcqa-original | as medmcqa, `cop` counted from 1 (the GitHub JSON release) | | `id` |
| mmlu | `question` | `choices[answer]`, `answer` an index or a letter | record number |
| pubmedqa | `question` / `QUESTION` | `long_answer` / `LONG_ANSWER` | PMID: `pubid`, `pmid`, or the JSON key |

A record without the question field, or without any answer field of its format, stops the run with
a ConfigError naming the field and the record; an answer that is present but empty (`cop` = -1 in
MedMCQA's test split, whose answers are hidden) leaves the item with its question only.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError

_KEY = "_key"  # field holding the key of an object-of-objects JSON file


@dataclass(frozen=True)
class BenchmarkFormat:
    """Where a format keeps its fields; each entry lists candidate field names, first present wins."""

    name: str
    question: tuple[str, ...]
    answer: tuple[str, ...] = ()  # fields holding the answer text itself
    choices: tuple[str, ...] = ()  # one field with a list or dict of options, or one field per option
    answer_key: tuple[str, ...] = ()  # field with the index or letter of the right option
    answer_base: int = 0  # value of answer_key that means the first option
    id: tuple[str, ...] = ()  # none present: the record number
    pmid: tuple[str, ...] = ()  # required when given: PubMedQA's items are matched to articles by it


FORMATS: dict[str, BenchmarkFormat] = {
    f.name: f
    for f in (
        BenchmarkFormat("medqa", ("question",), ("answer",), ("options",), ("answer_idx",), id=("id",)),
        BenchmarkFormat("medmcqa", ("question",), (), ("opa", "opb", "opc", "opd"), ("cop",), 0, id=("id",)),
        BenchmarkFormat("medmcqa-original", ("question",), (), ("opa", "opb", "opc", "opd"), ("cop",), 1, id=("id",)),
        BenchmarkFormat("mmlu", ("question",), (), ("choices",), ("answer",)),
        BenchmarkFormat(
            "pubmedqa", ("question", "QUESTION"), ("long_answer", "LONG_ANSWER"),
            id=("pubid", "pmid", _KEY), pmid=("pubid", "pmid", _KEY),
        ),  # fmt: skip
    )
}


@dataclass(frozen=True)
class BenchmarkItem:
    """One benchmark question with its right answer (empty when the file hides it)."""

    benchmark: str
    item_id: str
    question: str
    answer: str = ""
    pmid: str | None = None


def get_format(name: str) -> BenchmarkFormat:
    """The format called `name`; ConfigError listing the known ones otherwise."""
    try:
        return FORMATS[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown benchmark format {name!r}; known formats: {', '.join(sorted(FORMATS))}") from None


def _records(path: Path) -> Iterator[dict[str, Any]]:
    name = path.name.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq  # only Parquet benchmarks need it

        yield from pq.read_table(path).to_pylist()
    elif name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise ConfigError(f"{path}: line {n} is not JSON ({e.msg})") from None
                    if not isinstance(record, dict):
                        raise ConfigError(f"{path}: line {n} is not a JSON object")
                    yield record
    elif name.endswith(".json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
        if isinstance(data, list):
            yield from data
        elif isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
            for key, record in data.items():
                yield {**record, _KEY: key}
        else:
            raise ConfigError(f"{path}: expected a JSON list of objects or an object of objects keyed by id")
    else:
        raise ConfigError(f"{path}: unknown benchmark file type; use .jsonl, .jsonl.gz, .json or .parquet")


def _field(record: Mapping[str, Any], names: tuple[str, ...]) -> tuple[bool, Any]:
    for n in names:
        if n in record:
            return True, record[n]
    return False, None


def _missing(path: Path, n: int, fmt: BenchmarkFormat, what: str, names: tuple[str, ...], record: Mapping[str, Any]) -> ConfigError:
    fields = ", ".join(k for k in record if k != _KEY) or "none"
    wanted = " or ".join(repr(x) for x in names if x != _KEY)
    return ConfigError(f"{path}: record {n}: no {what} field {wanted} for benchmark format {fmt.name} (fields present: {fields})")


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _answer(record: Mapping[str, Any], fmt: BenchmarkFormat, path: Path, n: int) -> str:
    found, value = _field(record, fmt.answer)
    if found and _text(value):
        return _text(value)
    has_key, key = _field(record, fmt.answer_key)
    if not fmt.choices or not has_key:
        if found:
            return ""
        raise _missing(path, n, fmt, "answer", fmt.answer + fmt.answer_key, record)
    if len(fmt.choices) == 1:
        has_choices, options = _field(record, fmt.choices)
        if not has_choices:
            raise _missing(path, n, fmt, "choices", fmt.choices, record)
    else:
        absent = [c for c in fmt.choices if c not in record]
        if absent:
            raise _missing(path, n, fmt, "option", (absent[0],), record)
        options = [record[c] for c in fmt.choices]
    if key is None or _text(key) == "":
        return ""
    if isinstance(options, Mapping):
        return _text(options.get(str(key).strip()))
    if isinstance(key, str) and len(key.strip()) == 1 and key.strip().isalpha():
        index = ord(key.strip().upper()) - ord("A")
    else:
        try:
            index = int(key) - fmt.answer_base
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: record {n}: answer {key!r} is neither an option index nor a letter") from None
    if index < 0:
        return ""  # hidden answer (MedMCQA's test split has cop = -1)
    if index >= len(options):
        raise ConfigError(f"{path}: record {n}: answer index {key!r} but only {len(options)} options (format {fmt.name})")
    return _text(options[index])


def read_benchmark(path: str | Path, fmt: str | BenchmarkFormat, *, name: str | None = None) -> list[BenchmarkItem]:
    """Every item of a benchmark file, named `name` (default: the format's name)."""
    fmt = get_format(fmt) if isinstance(fmt, str) else fmt
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"benchmark file {path} does not exist")
    label = name or fmt.name
    items = []
    for n, record in enumerate(_records(path), 1):
        if not isinstance(record, Mapping):
            raise ConfigError(f"{path}: record {n} is not an object")
        found, question = _field(record, fmt.question)
        if not found:
            raise _missing(path, n, fmt, "question", fmt.question, record)
        pmid = None
        if fmt.pmid:
            found, value = _field(record, fmt.pmid)
            if not found or not _text(value):
                raise _missing(path, n, fmt, "PMID", fmt.pmid, record)
            pmid = _text(value)
        _, item_id = _field(record, fmt.id)
        items.append(
            BenchmarkItem(label, _text(item_id) or str(n), _text(question), _answer(record, fmt, path, n), pmid)
        )
    return items
