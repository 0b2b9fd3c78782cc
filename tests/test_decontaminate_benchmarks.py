"""Reading benchmark files: each format's fields, JSONL / JSON / Parquet, and errors that name the field."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.core.errors import ConfigError
from pipeline.dedup.benchmarks import FORMATS, BenchmarkItem, get_format, read_benchmark


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


MEDQA = [
    {"question": "A 60-year-old woman has fever. What is the diagnosis?", "answer": "Pneumonia",
     "options": {"A": "Pneumonia", "B": "Asthma"}, "meta_info": "step1", "answer_idx": "A"},
    {"question": "Which drug is used?", "options": {"A": "X", "B": "Aspirin"}, "answer_idx": "B"},  # no text answer
]  # fmt: skip
MEDMCQA = [
    {"id": "m1", "question": "Most common site of carcinoid tumor is", "opa": "Ileum", "opb": "Appendix",
     "opc": "Rectum", "opd": "Stomach", "cop": 1, "choice_type": "single", "exp": None},
    {"id": "m2", "question": "Hidden answer question here", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": -1},
]  # fmt: skip
MMLU = [
    {"question": "Which nerve supplies the deltoid?", "subject": "anatomy", "choices": ["Radial", "Axillary", "Ulnar", "Median"], "answer": 1},
    {"question": "Letter answer?", "subject": "anatomy", "choices": ["p", "q"], "answer": "B"},
]  # fmt: skip
PUBMEDQA = {
    "21645374": {"QUESTION": "Do mitochondria play a role in remodelling lace plant leaves?",
                 "CONTEXTS": ["..."], "LONG_ANSWER": "Results depict mitochondrial dynamics in vivo.", "final_decision": "yes"},
}  # fmt: skip


def test_medqa_jsonl_answer_text_or_option_letter(tmp_path: Path) -> None:
    items = read_benchmark(write_jsonl(tmp_path / "medqa.jsonl", MEDQA), "medqa")
    assert items == [
        BenchmarkItem("medqa", "1", MEDQA[0]["question"], "Pneumonia"),
        BenchmarkItem("medqa", "2", "Which drug is used?", "Aspirin"),
    ]


def test_medmcqa_parquet_zero_based_and_original_one_based(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "medmcqa.parquet", MEDMCQA)
    items = read_benchmark(path, "medmcqa")
    assert [(i.item_id, i.answer) for i in items] == [("m1", "Appendix"), ("m2", "")]  # cop -1: hidden
    original = read_benchmark(path, "medmcqa-original", name="medmcqa")
    assert original[0].answer == "Ileum" and original[0].benchmark == "medmcqa"


def test_mmlu_index_or_letter(tmp_path: Path) -> None:
    items = read_benchmark(write_parquet(tmp_path / "mmlu.parquet", [MMLU[0], {**MMLU[1], "answer": 1}]), "mmlu")
    assert [i.answer for i in items] == ["Axillary", "q"]
    letters = read_benchmark(write_jsonl(tmp_path / "mmlu.jsonl", MMLU), "MMLU")
    assert [i.answer for i in letters] == ["Axillary", "q"]


def test_pubmedqa_original_json_keyed_by_pmid_and_hf_columns(tmp_path: Path) -> None:
    path = tmp_path / "ori_pqal.json"
    path.write_text(json.dumps(PUBMEDQA), encoding="utf-8")
    (item,) = read_benchmark(path, "pubmedqa")
    assert item == BenchmarkItem("pubmedqa", "21645374", PUBMEDQA["21645374"]["QUESTION"],
                                 "Results depict mitochondrial dynamics in vivo.", "21645374")  # fmt: skip
    hf = [{"pubid": 25429730, "question": "Q?", "context": {"contexts": ["c"]}, "long_answer": "L.", "final_decision": "no"}]
    (row,) = read_benchmark(write_parquet(tmp_path / "pqa.parquet", hf), "pubmedqa")
    assert (row.pmid, row.item_id, row.answer) == ("25429730", "25429730", "L.")
    gz = tmp_path / "pqa.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write(json.dumps(hf[0]) + "\n\n")
    assert read_benchmark(gz, "pubmedqa") == [row]


@pytest.mark.parametrize(
    ("fmt", "row", "message"),
    [
        ("medqa", {"query": "x", "answer": "y"}, r"record 1: no question field 'question' for benchmark format medqa \(fields present: query, answer\)"),
        ("medqa", {"question": "x"}, r"no answer field 'answer' or 'answer_idx'"),
        ("medmcqa", {"question": "x", "opa": "a", "opb": "b", "opc": "c", "cop": 0}, r"no option field 'opd'"),
        ("mmlu", {"question": "x", "answer": 0}, r"no choices field 'choices'"),
        ("mmlu", {"question": "x", "choices": ["a", "b"], "answer": 5}, r"answer index 5 but only 2 options"),
        ("mmlu", {"question": "x", "choices": ["a"], "answer": "first"}, r"neither an option index nor a letter"),
        ("pubmedqa", {"question": "x", "long_answer": "y"}, r"no PMID field 'pubid' or 'pmid'"),
    ],
)
def test_missing_or_bad_fields_name_the_field(tmp_path: Path, fmt: str, row: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read_benchmark(write_jsonl(tmp_path / "b.jsonl", [row]), fmt)


def test_bad_files_and_formats(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown benchmark format 'medqa2'; known formats: medmcqa, medmcqa-original, medqa, mmlu, pubmedqa"):
        get_format("medqa2")
    with pytest.raises(ConfigError, match="does not exist"):
        read_benchmark(tmp_path / "nope.jsonl", "medqa")
    (tmp_path / "b.csv").write_text("question,answer\n")
    with pytest.raises(ConfigError, match="unknown benchmark file type"):
        read_benchmark(tmp_path / "b.csv", "medqa")
    (tmp_path / "b.jsonl").write_text('{"question": "x", "answer": "y"}\nnot json\n')
    with pytest.raises(ConfigError, match="line 2 is not JSON"):
        read_benchmark(tmp_path / "b.jsonl", "medqa")
    (tmp_path / "b.json").write_text('"just a string"')
    with pytest.raises(ConfigError, match="expected a JSON list of objects"):
        read_benchmark(tmp_path / "b.json", "medqa")
    assert set(FORMATS) == {"medqa", "medmcqa", "medmcqa-original", "mmlu", "pubmedqa"}
