"""Issue 24: the rule teachers, the length features and the TF-IDF heads a user can propagate with."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch

from classifiers.baselines import baseline_wins, tfidf
from classifiers.data import label_arrays, load_examples, model_input
from classifiers.encoding import length_features
from classifiers.predict import Predictor
from classifiers.tfidf_heads import TfidfHeads, resolve_heads
from pipeline.cli import main as cli
from pipeline.core.errors import ConfigError
from pipeline.core.workdir import Workdir
from pipeline.teacher.rules import (
    TEACHERS,
    content_rule_labels,
    length_rule_labels,
    sample_paragraphs,
    write_workdir,
)
from tests.students import rule_examples

MAX_LENGTH = 32


def test_the_length_teacher_scores_length_and_the_content_teacher_ignores_it() -> None:
    short = "Patients with the disease were treated [3]."
    long = short + " " + " ".join(["word"] * 300)
    assert length_rule_labels(long)[2] == length_rule_labels(short)[2] + 2
    dense = "patients disease treatment clinical therapy " * 4
    assert content_rule_labels(dense)[2] == 5 and content_rule_labels(dense + " filler" * 400)[2] < 5
    assert set(TEACHERS) == {"rules-v1", "rules-length-v1", "rules-content-v1"}


def test_length_features_see_past_the_cut() -> None:
    f = length_features([10, 32, 500], 32)
    assert f.shape == (3, 3)
    assert list(f[:, 1]) == [0.0, 0.0, 1.0]  # only the 500-token paragraph was cut
    assert f[2, 0] > f[1, 0] > f[0, 0] and f[0, 2] == 0.0 and f[2, 2] > 0


@pytest.mark.shared_data
def test_tfidf_heads_saved_and_loaded_predict_as_the_baseline(tmp_path: Path, shared_sample: Path) -> None:
    paragraphs = [p for p in sample_paragraphs(shared_sample, max_articles=20) if p.text.strip()]
    ex = rule_examples(paragraphs, length_rule_labels)
    train, test = ex[: len(ex) // 2], ex[len(ex) // 2 :]
    texts = [model_input(e.text, e.section_title) for e in train]
    heads = TfidfHeads.fit(texts, label_arrays(train))
    heads.save(tmp_path)
    loaded = TfidfHeads.load(tmp_path)
    test_texts = [model_input(e.text, e.section_title) for e in test]
    probs, score = loaded.predict(test_texts)
    base = tfidf(train, test)  # the baseline of the student's report: the same heads
    np.testing.assert_allclose(score, base.educational_score, atol=1e-4)
    for h, p in probs.items():
        np.testing.assert_allclose(p, base.probs[h], atol=1e-4)
        np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    with pytest.raises(ConfigError, match="no TF-IDF heads"):
        TfidfHeads.load(tmp_path / "nowhere")


def test_a_baseline_that_wins_is_named_and_tfidf_usable_only_when_it_wins_too() -> None:
    student = {"document_type": {"macro_f1": 0.5}, "domain": {"macro_f1": 0.8}, "educational_score": {"pearson_r": 0.55}}
    base = {"tfidf": {"document_type": {"macro_f1": 0.45}, "domain": {"macro_f1": 0.805}, "educational_score": {"pearson_r": 0.75}},
            "frozen_encoder": {"document_type": {"macro_f1": 0.6}, "domain": {"macro_f1": 0.7}, "educational_score": {"pearson_r": None}}}
    wins = baseline_wins(student, base)
    assert set(wins) == {"document_type", "educational_score"}  # domain: within the margin
    assert wins["educational_score"] == {"baseline": "tfidf", "metric": "pearson_r", "student": 0.55,
                                         "baseline_value": 0.75, "usable": True}
    assert wins["document_type"]["baseline"] == "frozen_encoder" and not wins["document_type"]["usable"]
    assert resolve_heads(["auto", "domain"], ["educational_score"]) == ["educational_score", "domain"]
    with pytest.raises(ConfigError, match="unknown head"):
        resolve_heads(["score"], [])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, shared_sample: Path) -> Workdir:
    """A few steps of a student with length features on the length teacher's labels (quality does not matter)."""
    w = Workdir.of(tmp_path_factory.mktemp("work"))
    paragraphs = [p for p in sample_paragraphs(shared_sample, max_articles=12) if p.text.strip()]
    write_workdir(w, paragraphs, paragraphs[:120], teacher="rules-length-v1")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    assert cli(["train", "--workdir", str(w.root), "--max-length", str(MAX_LENGTH), "--max-steps", "3",
                "--min-validation", "30", "--length-features"]) == 0
    return w


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.timeout(1800)
def test_train_saves_length_features_and_tfidf_heads_and_propagate_uses_them(trained: Workdir) -> None:
    w = trained
    cfg = json.loads((w.model / "training_config.json").read_text())
    metrics = json.loads((w.model / "metrics.json").read_text())
    assert cfg["n_features"] == 3 and cfg["length_features"] is True
    assert metrics["tfidf_heads_id"].startswith("tfidf-") and "baseline_wins" in metrics
    pred = Predictor.from_dir(w.model)
    assert pred.model.n_features == 3
    # the heads read the length: the same opening, longer paragraph -> other features -> other outputs
    text = load_examples(w)[0].text
    a, b = pred.predict([text]), pred.predict([text + " more" * 400])
    assert a.truncated[0] != b.truncated[0] or a.n_tokens[0] == b.n_tokens[0]
    assert abs(float(a.educational_score[0]) - float(b.educational_score[0])) > 0 or \
        not np.allclose(a.probs["domain"], b.probs["domain"])

    assert cli(["propagate", "--workdir", str(w.root), "--tfidf-heads", "educational_score"]) == 0
    rows = duckdb.sql(f"SELECT l.id, l.educational_score, l.model_id, p.text, p.section_title FROM "
                      f"read_parquet('{w.glob('labels')}') l JOIN read_parquet('{w.glob('paragraphs')}') p USING (id) "
                      "ORDER BY l.id").fetchall()
    assert {r[2] for r in rows} == {f"{metrics['model_id']}+educational_score={metrics['tfidf_heads_id']}"}
    _, score = TfidfHeads.load(w.model).predict([model_input(r[3], r[4]) for r in rows])
    np.testing.assert_allclose([r[1] for r in rows], score, atol=1e-3)
    # the other heads still come from the student
    student = Predictor.from_dir(w.model).predict([model_input(r[3], r[4]) for r in rows[:5]])
    types = duckdb.sql(f"SELECT document_type_scores FROM read_parquet('{w.glob('labels')}') ORDER BY id LIMIT 5").fetchall()
    np.testing.assert_allclose([t[0] for t in types], student.probs["document_type"], atol=1e-4)

    assert cli(["propagate", "--workdir", str(w.root), "--tfidf-heads", "score"]) == 2
