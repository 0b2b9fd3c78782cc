"""Uncertainty of the trained student per paragraph: the active-learning signal of
`pmc-curate sample --strategy uncertainty` (pipeline/stages/sample.py calls uncertainty_scores).

Score = mean over the classification heads (document type, domain) of the entropy of the head's
probabilities, normalised by log(n_classes): 0 when the student is certain, 1 when it is uniform.
The regression head gives no distribution, so it does not take part.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from classifiers.data import model_input
from classifiers.predict import Predictions, Predictor, entropy
from pipeline.core import storage
from pipeline.core.errors import ConfigError
from pipeline.core.labels import HEADS
from pipeline.core.workdir import Workdir


def uncertainty(pred: Predictions) -> np.ndarray:
    """Per-row uncertainty in [0, 1] from a student's predictions."""
    heads = [h.name for h in HEADS if h.kind == "classification"]
    return np.mean([entropy(pred.probs[h]) for h in heads], axis=0).astype(np.float32)


def uncertainty_scores(
    workdir: Workdir, paragraph_ids: Sequence[str], *, device: str = "auto", batch_size: int = 64
) -> dict[str, float]:
    """{paragraph id: uncertainty} for the given ids, using the student in W/model.

    Ids that are not in W/paragraphs (or whose text is empty) are absent from the result.
    Raises ConfigError when there is no trained student.
    """
    model_dir = workdir.model
    if not (model_dir / "heads.safetensors").is_file():
        raise ConfigError(f"--strategy uncertainty needs a trained student in {model_dir}; run `pmc-curate train` first")
    ids = list(dict.fromkeys(paragraph_ids))
    if not ids:
        return {}
    con = storage.duckdb_connect()
    try:
        rows = con.sql(
            "SELECT id, text, section_title FROM read_parquet($g, union_by_name = true) "
            "WHERE id IN (SELECT unnest($ids)) AND text IS NOT NULL AND length(trim(text)) > 0",
            params={"g": workdir.glob("paragraphs"), "ids": ids},
        ).fetchall()
    finally:
        con.close()
    if not rows:
        return {}
    predictor = Predictor.from_dir(model_dir, device=device, batch_size=batch_size)
    pred = predictor.predict([model_input(t, s) for _, t, s in rows])
    u = uncertainty(pred)
    return {r[0]: float(x) for r, x in zip(rows, u, strict=True)}
