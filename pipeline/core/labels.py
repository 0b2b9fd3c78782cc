"""The label schema, defined once.

Prompt rubric, reply JSON schema, reply validation, classifier heads and SQL column names all
derive from this module; tests/test_label_schema.py fails if any of them drifts.

Values follow the authors' released annotations (document_type "Clinical case"/"Study"/"Review"/
"Other"; domain "clinical"/"biomedical"/"other"; educational_score 1-5), so our tables join theirs.
"""

from __future__ import annotations

from dataclasses import dataclass

DOCUMENT_TYPES: tuple[str, ...] = ("Clinical case", "Study", "Review", "Other")
DOMAINS: tuple[str, ...] = ("clinical", "biomedical", "other")
SCORE_MIN: int = 1
SCORE_MAX: int = 5


@dataclass(frozen=True)
class Head:
    """One label = one classifier head = one column."""

    name: str
    kind: str  # "classification" (cross-entropy) or "regression" (MSE)
    classes: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None

    @property
    def scores_column(self) -> str | None:
        """Column holding one probability per class (Biomed-Enriched names), for classification heads."""
        return f"{self.name}_scores" if self.kind == "classification" else None


HEADS: tuple[Head, ...] = (
    Head("document_type", "classification", classes=DOCUMENT_TYPES),
    Head("domain", "classification", classes=DOMAINS),
    Head("educational_score", "regression", minimum=SCORE_MIN, maximum=SCORE_MAX),
)
HEADS_BY_NAME: dict[str, Head] = {h.name: h for h in HEADS}
LABEL_COLUMNS: tuple[str, ...] = tuple(h.name for h in HEADS)
