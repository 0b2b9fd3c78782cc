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
