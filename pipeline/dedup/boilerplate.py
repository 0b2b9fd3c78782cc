"""Boilerplate: text repeated across many articles, flagged rather than collapsed into one group.

PMC repeats templates: consent and ethics statements, funding and conflict-of-interest sentences,
journal notices. Two rules, both counted across articles (not paragraphs), so that one long article
repeating itself does not count as a template:

- a duplicate group (exact or near) is boilerplate when it spans at least `group_min_articles`
  articles or holds at least `group_min_members` paragraphs (`is_boilerplate_group`): the members
  keep their group, and a recipe can drop them all instead of keeping one;
- a sentence (split on . ! ? followed by a capital, digit or bracket; normalised like exact dedup;
  at least `sentence_min_words` words) is boilerplate when it occurs in at least
  `sentence_min_articles` articles. A paragraph's `boilerplate_share` is the share of its words in
  such sentences; at `paragraph_share` or more the paragraph is flagged. This catches different
  paragraphs that share one long template sentence: their shingle sets overlap too little to be
  near duplicates (Jaccard ~0.4 for a 30-word template in a 50-word paragraph), which is right, yet
  the template is marked.

Genuine duplicates rarely span more than a few articles (an article published twice, versions, a
methods paragraph a lab reuses in its own papers); ten and more is a template. The thresholds are
settings; docs/dedup.md says how to choose them.
"""

from __future__ import annotations

import re
from collections.abc import Container, Sequence
from dataclasses import dataclass

from pipeline.core.errors import ConfigError
from pipeline.dedup.exact import fingerprint
from pipeline.dedup.normalize import normalize_bytes

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[\"'“‘])")


@dataclass(frozen=True)
class BoilerplateParams:
    """Boilerplate settings; the stage's flags map one-to-one onto these fields."""

    group_min_articles: int = 10
    group_min_members: int = 100  # also a group repeated within few articles, e.g. a per-table note
    sentence_min_words: int = 8  # "Data not shown." and other short sentences are too common to mean anything
    sentence_min_articles: int = 10
    paragraph_share: float = 0.5
    digits_to_zero: bool = False

    def __post_init__(self) -> None:
        counts = (self.group_min_articles, self.group_min_members, self.sentence_min_words, self.sentence_min_articles)
        if min(counts) < 1:
            raise ConfigError("boilerplate thresholds must be at least 1")
        if not 0.0 < self.paragraph_share <= 1.0:
            raise ConfigError(f"paragraph_share must be in (0, 1], got {self.paragraph_share}")


def is_boilerplate_group(n_members: int, n_articles: int, params: BoilerplateParams | None = None) -> bool:
    """Whether a duplicate group is a template rather than a copy."""
    p = params or BoilerplateParams()
    return n_articles >= p.group_min_articles or n_members >= p.group_min_members


def split_sentences(text: str) -> list[str]:
    """Sentences of raw (not normalised) text."""
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


def sentence_hashes(text: str, params: BoilerplateParams | None = None) -> list[tuple[int, int]]:
    """(fingerprint, word count) of each distinct sentence with at least `sentence_min_words` words."""
    p = params or BoilerplateParams()
    out: dict[int, int] = {}
    for sentence in split_sentences(text):
        data = normalize_bytes(sentence, digits_to_zero=p.digits_to_zero)
        n_words = data.count(b" ") + 1 if data else 0
        if n_words >= p.sentence_min_words:
            out.setdefault(fingerprint(data), n_words)
    return list(out.items())


def is_common_sentence(n_articles: int, params: BoilerplateParams | None = None) -> bool:
    """Whether a sentence found in `n_articles` distinct articles is boilerplate."""
    return n_articles >= (params or BoilerplateParams()).sentence_min_articles


def boilerplate_share(sentences: Sequence[tuple[int, int]], common: Container[int], total_words: int) -> float:
    """Share of a paragraph's `total_words` (normalised words) that lie in common sentences."""
    if total_words <= 0:
        return 0.0
    return min(1.0, sum(n for h, n in sentences if h in common) / total_words)


def is_boilerplate_paragraph(share: float, params: BoilerplateParams | None = None) -> bool:
    """Whether a paragraph with this `boilerplate_share` is flagged."""
    return share >= (params or BoilerplateParams()).paragraph_share
