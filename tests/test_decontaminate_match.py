"""Decontamination on planted items: verbatim overlaps match, paraphrases beyond the rule do not, short
questions match whole, PubMedQA matches by PMID, and corpus-common n-grams are ignored."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from pipeline.dedup.benchmarks import BenchmarkItem, read_benchmark
from pipeline.dedup.contamination import (
    RULE_NGRAM,
    RULE_PMID,
    RULE_QUESTION,
    ContaminationIndex,
    DecontamParams,
    Match,
    build_index,
    common_keys,
)
from tests.dedup_fixtures import BASE, distinct_sentence
from tests.test_decontaminate_benchmarks import write_jsonl, write_parquet

VIGNETTE = ("A 34-year-old woman comes to the emergency department because of palpitations and weight loss "
            "over the past three months. Her pulse is 118 per minute and she has a fine tremor of the hands. "
            "Which of the following is the most likely cause of her symptoms?")  # fmt: skip
FUNDING = "This work was supported by the National Institutes of Health under grant number R01 HL 123456 to the senior author."
LONG_ANSWER = ("Daily vitamin D supplementation did not reduce the incidence of fractures in community dwelling "
               f"older adults without osteoporosis. {FUNDING}")  # fmt: skip

MEDQA = [
    {"question": VIGNETTE, "answer": "Graves disease", "answer_idx": "C"},  # planted verbatim below
    {"question": "A 70-year-old man has crushing chest pain for two hours and ST elevation in leads II, III and aVF. "
                 "Which artery is most likely occluded?", "answer": "Right coronary artery"},  # paraphrased below
]  # fmt: skip
MEDMCQA = [
    {"id": "mc-short", "question": "Most common site of carcinoid tumor is", "opa": "Ileum", "opb": "Appendix",
     "opc": "Rectum", "opd": "Stomach", "cop": 1},  # 7 words: whole-question rule
    {"id": "mc-para", "question": "Drug of choice for absence seizures in children", "opa": "Ethosuximide",
     "opb": "Phenytoin", "opc": "Carbamazepine", "opd": "Gabapentin", "cop": 0},  # paraphrased below
    {"id": "mc-tiny", "question": "Function of ferritin", "opa": "Iron storage", "opb": "b", "opc": "c",
     "opd": "d", "cop": 0},  # 3 words: too short to match whole
]  # fmt: skip
MMLU = [  # 8-word question + 5-word answer: whole question, and 13-grams across question and answer
    {"question": "The enzyme deficient in classic phenylketonuria is called", "subject": "medical_genetics",
     "choices": ["tyrosine hydroxylase", "phenylalanine hydroxylase enzyme of liver", "x", "y"], "answer": 1},
]  # fmt: skip
PUBMEDQA = [
    {"pubid": 31415926, "question": "Does vitamin D supplementation prevent fractures in older adults?",
     "long_answer": LONG_ANSWER, "final_decision": "no"},
]  # fmt: skip

PARAGRAPHS = {
    "verbatim-vignette": f"Case 4. {VIGNETTE} The answer in our teaching file was Graves disease.",
    "paraphrased-vignette": ("An older man presented after two hours of severe chest pain; the electrocardiogram showed "
                             "inferior ST elevation, and angiography found the right coronary artery blocked."),
    "short-question": "In our series the most common site of carcinoid tumor is the appendix, as in earlier reports.",
    "short-paraphrased": "Ethosuximide remains the preferred first drug for childhood absence epilepsy in most guidelines.",
    "tiny-question": "The main function of ferritin is iron storage in hepatocytes and macrophages of the spleen.",
    "question-and-answer": ("Textbooks state that the enzyme deficient in classic phenylketonuria is called "
                            "phenylalanine hydroxylase enzyme of liver origin."),
    "long-answer": f"In conclusion, {LONG_ANSWER}",
    "clean": BASE["bp"],
}  # fmt: skip
# The funding sentence (part of the PubMedQA long answer) also appears in 150 unrelated paragraphs.
COMMON = {f"funded-{i}": f"{distinct_sentence(i)} {FUNDING}" for i in range(150)}

EXPECTED = {
    "verbatim-vignette": {("medqa", "1", RULE_NGRAM)},
    "short-question": {("medmcqa", "mc-short", RULE_QUESTION)},
    "question-and-answer": {("mmlu", "1", RULE_NGRAM), ("mmlu", "1", RULE_QUESTION)},
    "long-answer": {("pubmedqa", "31415926", RULE_NGRAM)},
}


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> ContaminationIndex:
    d: Path = tmp_path_factory.mktemp("bench")
    items: list[BenchmarkItem] = []
    items += read_benchmark(write_jsonl(d / "medqa.jsonl", MEDQA), "medqa")
    items += read_benchmark(write_parquet(d / "medmcqa.parquet", MEDMCQA), "medmcqa")
    items += read_benchmark(write_parquet(d / "mmlu.parquet", MMLU), "mmlu")
    items += read_benchmark(write_jsonl(d / "pubmedqa.jsonl", PUBMEDQA), "pubmedqa")
    return build_index(items)


def _run(index: ContaminationIndex, paragraphs: dict[str, str], ignore: np.ndarray | None = None) -> dict[str, set[tuple[str, str, str]]]:
    out = {}
    for pid, matches in zip(paragraphs, index.match_batch(list(paragraphs.values()), ignore=ignore), strict=True):
        if matches:
            out[pid] = {(m.benchmark, m.item_id, m.rule) for m in matches}
    return out


def test_index_contents(index: ContaminationIndex) -> None:
    d = index.describe()
    assert d["items"] == {"medqa": 2, "medmcqa": 3, "mmlu": 1, "pubmedqa": 1}
    assert d["whole_questions"] == 4  # the questions of 5..12 words: two MedMCQA, the MMLU and the PubMedQA one
    assert index.question_lengths == (7, 8, 9)
    assert d["pmids"] == 1


def test_planted_items_match_exactly_as_expected(index: ContaminationIndex) -> None:
    assert _run(index, PARAGRAPHS) == EXPECTED


def test_verbatim_vignette_counts_its_ngrams(index: ContaminationIndex) -> None:
    (m,) = index.match_batch([PARAGRAPHS["verbatim-vignette"]])[0]
    # the vignette normalises to 48 words, so 36 13-grams; the answer is not next to it in the paragraph
    assert m == Match("medqa", "1", RULE_NGRAM, 36)


def test_common_ngrams_are_ignored_once_counted(index: ContaminationIndex) -> None:
    corpus = {**PARAGRAPHS, **COMMON}
    before = _run(index, corpus)
    assert set(before) == set(EXPECTED) | set(COMMON)  # the funding sentence matches the PubMedQA item
    # what the stage does: count, per index key, the paragraphs containing it; keys over max_df are ignored
    df: dict[int, int] = {}
    for keys in index.hits(list(corpus.values())):
        for k in keys.tolist():
            df[k] = df.get(k, 0) + 1
    ignore = common_keys(df, index.params.max_corpus_df)
    assert ignore.size == 8  # the funding sentence normalises to 20 words: 8 13-grams
    assert _run(index, corpus, ignore=ignore) == EXPECTED
    assert _run(index.without(ignore), corpus) == EXPECTED


def test_pmid_matches_whole_article(index: ContaminationIndex) -> None:
    assert index.pmid_matches("31415926") == [Match("pubmedqa", "31415926", RULE_PMID)]
    assert index.pmid_matches(" 31415926 ") == index.pmid_matches("31415926")
    assert index.pmid_matches("1") == [] and index.pmid_matches(None) == []


def test_digits_to_zero_and_min_question_words() -> None:
    item = BenchmarkItem("medmcqa", "q", "Normal serum sodium concentration is 135 to 145", "mmol per litre")
    text = "Normal serum sodium concentration is 136 to 146 in most laboratories."
    assert build_index([item]).match_batch([text]) == [[]]
    zeroed = build_index([item], DecontamParams(digits_to_zero=True))
    assert [(m.item_id, m.rule) for m in zeroed.match_batch([text])[0]] == [("q", RULE_QUESTION)]
    tiny = build_index([BenchmarkItem("b", "t", "Function of ferritin", "")], DecontamParams(min_question_words=3))
    assert [m.rule for m in tiny.match_batch([PARAGRAPHS["tiny-question"]])[0]] == [RULE_QUESTION]


def test_index_is_a_small_picklable_side_input(index: ContaminationIndex) -> None:
    again = pickle.loads(pickle.dumps(index))
    assert _run(again, PARAGRAPHS) == EXPECTED
    assert index.keys.dtype == np.uint64 and (np.diff(index.keys.astype(np.float64)) >= 0).all()
    assert index.nbytes == 13 * index.keys.size


def test_empty_index_and_empty_texts() -> None:
    empty = build_index([])
    assert empty.match_batch(["anything at all here", ""]) == [[], []]
    assert empty.describe()["entries"] == 0
