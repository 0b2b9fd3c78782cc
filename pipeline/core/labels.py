"""The label schema, defined once.

Prompt rubric, reply JSON schema, reply validation, record fields, classifier heads, the SQL bindings
of the recipes and the report's tables all derive from this module; tests/test_house.py fails if a
module elsewhere spells a class name itself, and tests/test_prompt.py if the prompt files drift.

Values follow the authors' released annotations (document_type "Clinical case"/"Study"/"Review"/
"Other"; domain "clinical"/"biomedical"/"other"; educational_score 1-5), so our tables join theirs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DOCUMENT_TYPES: tuple[str, ...] = ("Clinical case", "Study", "Review", "Other")
DOMAINS: tuple[str, ...] = ("clinical", "biomedical", "other")
# Names for code that means one class (the rule teacher, recipes' bindings, the published vector orders).
CLINICAL_CASE, STUDY, REVIEW, OTHER_TYPE = DOCUMENT_TYPES
CLINICAL, BIOMEDICAL, OTHER_DOMAIN = DOMAINS
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


def binding_name(head: str, value: str) -> str:
    """The SQL parameter a recipe uses for one class: `$type_clinical_case`, `$domain_clinical`."""
    prefix = "type" if head == "document_type" else head
    return f"{prefix}_{re.sub(r'[^a-z0-9]+', '_', value.lower()).strip('_')}"


def sql_bindings() -> dict[str, str | int]:
    """Every label value a recipe may use, named by binding_name, plus the score range."""
    out: dict[str, str | int] = {}
    for h in HEADS:
        out.update({binding_name(h.name, v): v for v in h.classes})
    out.update({"score_min": SCORE_MIN, "score_max": SCORE_MAX})
    return out
