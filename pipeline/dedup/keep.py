"""Which copy of a duplicate group is kept: one documented order, the same on every runner and shard.

The kept copy is the first member in this order:

1. newest version first (`version`: PMC's article version number, or anything that orders versions,
   larger is newer); members without a version come after those with one;
2. highest educational score first, where labels exist; members without a score come after;
3. longest first (`n_chars` of the paragraph text, or any length measure);
4. smallest `(article_id, path)`, then `id`: a total order, so exactly one member is first.

Each step only applies where the value exists, so a workdir without labels orders by version, length
and id (`describe_order` says so for the stage summary). The order depends on the members' fields
only, never on the order they arrive in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Member:
    """A copy in a duplicate group with the fields the order reads."""

    id: str
    article_id: str
    path: str
    version: int | None = None
    educational_score: float | None = None
    n_chars: int | None = None


def keep_key(
    article_id: str,
    path: str,
    *,
    version: int | None = None,
    educational_score: float | None = None,
    n_chars: int | None = None,
    id: str = "",  # the paragraph id, last resort of the order
) -> tuple[object, ...]:
    """Sort key: the member with the smallest key is the kept copy (see the module docstring)."""
    return (
        version is None, -(version or 0),
        educational_score is None, -(educational_score or 0.0),
        n_chars is None, -(n_chars or 0),
        article_id, path, id,
    )  # fmt: skip


def member_key(m: Member) -> tuple[object, ...]:
    """`keep_key` of a Member."""
    return keep_key(m.article_id, m.path, version=m.version, educational_score=m.educational_score, n_chars=m.n_chars, id=m.id)


def choose_kept(members: Iterable[Member]) -> Member:
    """The group's kept copy: the member first in the documented order."""
    best = min(members, key=member_key, default=None)
    if best is None:
        raise ValueError("an empty group has no kept copy")
    return best


def describe_order(*, has_versions: bool, has_scores: bool) -> str:
    """The order actually used, in words, for the stage summary (says what it fell back from)."""
    steps = []
    if has_versions:
        steps.append("newest version")
    if has_scores:
        steps.append("highest educational score")
    steps += ["longest", "(article_id, path)"]
    text = "kept copy: " + ", then ".join(steps)
    missing = [what for what, present in (("versions", has_versions), ("educational scores (no labels)", has_scores)) if not present]
    return text + (f"; no {' and no '.join(missing)}, so that step is skipped" if missing else "")
