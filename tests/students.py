"""A student with seeded fresh heads on the default encoder, saved the way `train` saves a model.

Tests of saving, loading and propagation need a model directory, not a good model.
"""

from __future__ import annotations

from pathlib import Path


def save_fresh_student(d: Path, max_length: int, model_id: str) -> Path:
    import torch
    from transformers import AutoTokenizer

    from classifiers.model import StudentModel
    from classifiers.train import default_base_model

    torch.manual_seed(0)
    base = default_base_model()
    StudentModel.from_base(base).save(d, AutoTokenizer.from_pretrained(base), {"max_length": max_length, "model_id": model_id})
    return d


def rule_examples(paragraphs, rules) -> list:  # type: ignore[no-untyped-def]
    """classifiers.data.Example rows of paragraphs labelled by a rule teacher's `rules(text)`."""
    from classifiers.data import Example
    from pipeline.core.labels import DOCUMENT_TYPES, DOMAINS

    out = []
    for p in paragraphs:
        t, d, s = rules(p.text)
        out.append(Example(p.id, p.article_id, p.text, p.section_title, DOCUMENT_TYPES.index(t), DOMAINS.index(d), s))
    return out
