"""Exact and near duplicates on written fixtures: edited copies group, template-sharing paragraphs do
not, and the groups and kept copies are the same whatever the input order and sharding."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from pipeline.dedup.components import bucket_edges, star_edges, star_rounds
from pipeline.dedup.groups import exact_groups, near_groups
from pipeline.dedup.keep import Member, choose_kept
from pipeline.dedup.lsh import band_keys
from pipeline.dedup.minhash import MinHashParams, signatures, similarity
from tests.dedup_fixtures import BASE, EDITS, distinct_sentence, template_paragraph


def _corpus() -> dict[str, str]:
    """Paragraph id -> text: the three bases, their edited copies, an exact copy, 30 template-sharing
    paragraphs and 40 unrelated paragraphs."""
    out = {f"PMC1{i}/sec[0]/p[0]": BASE[k] for i, k in enumerate(BASE)}
    out.update({f"PMC2{i}/sec[1]/p[2]": text for i, text in enumerate(EDITS.values())})
    out["PMC30/sec[0]/p[0]"] = BASE["bp"].upper().replace(".", " .")  # exact after normalisation
    out.update({f"PMC4{i:02d}/sec[3]/p[0]": template_paragraph(i) for i in range(30)})
    out.update({f"PMC5{i:02d}/p[0]": " ".join(distinct_sentence(1000 + 10 * i + j) for j in range(5)) for i in range(40)})
    return out


EXPECTED_NEAR = {
    "PMC10/sec[0]/p[0]": {"PMC10/sec[0]/p[0]", "PMC20/sec[1]/p[2]", "PMC21/sec[1]/p[2]", "PMC30/sec[0]/p[0]"},  # bp
    "PMC11/sec[0]/p[0]": {"PMC11/sec[0]/p[0]", "PMC22/sec[1]/p[2]"},  # tb, reordered sentence
    "PMC12/sec[0]/p[0]": {"PMC12/sec[0]/p[0]", "PMC23/sec[1]/p[2]"},  # mri, two numbers changed
}


def _as_groups(labels: dict[str, str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for node, group in labels.items():
        out.setdefault(group, set()).add(node)
    return out


def test_exact_groups_only_the_normalised_copy() -> None:
    corpus = _corpus()
    groups = _as_groups(exact_groups(list(corpus), list(corpus.values())))
    assert groups == {"PMC10/sec[0]/p[0]": {"PMC10/sec[0]/p[0]", "PMC30/sec[0]/p[0]"}}
    # with digits mapped to 0 the changed-number copy is an exact duplicate too
    zeroed = _as_groups(exact_groups(list(corpus), list(corpus.values()), digits_to_zero=True))
    assert zeroed["PMC10/sec[0]/p[0]"] == {"PMC10/sec[0]/p[0]", "PMC20/sec[1]/p[2]", "PMC30/sec[0]/p[0]"}


@pytest.mark.parametrize("sketch_bits", [4, None])
def test_edited_copies_group_and_template_sharing_paragraphs_do_not(sketch_bits: int | None) -> None:
    corpus = _corpus()
    groups = _as_groups(near_groups(list(corpus), list(corpus.values()), MinHashParams(sketch_bits=sketch_bits)))
    assert groups == EXPECTED_NEAR


def test_template_sharing_paragraphs_need_the_confirmation_step() -> None:
    """Some template-sharing paragraphs share a band by chance; only the signature check keeps them apart."""
    texts = [template_paragraph(i) for i in range(300)]
    ids = [f"T{i:03d}" for i in range(300)]
    p = MinHashParams()
    sigs, _ = signatures(texts, p)
    buckets: dict[int, list[int]] = {}
    for row, keys in enumerate(band_keys(sigs, p.bands, p.rows).tolist()):
        for k in keys:
            buckets.setdefault(k, []).append(row)
    shared = [rows for rows in buckets.values() if len(rows) > 1]
    assert shared, "fixture too small: no chance collision to reject"
    assert all(bucket_edges([ids[r] for r in rows], sigs[rows], p.threshold) == [] for rows in shared)
    assert any(star_edges([ids[r] for r in rows]) for rows in shared)  # unconfirmed, they would group


def test_signature_estimates_follow_the_edits() -> None:
    sigs, valid = signatures([BASE["bp"], EDITS["bp.number"], BASE["tb"], ""])
    assert valid.tolist() == [True, True, True, False]
    assert similarity(sigs[0], sigs[1]) >= 0.8
    assert similarity(sigs[0], sigs[2]) <= 0.1
    assert not sigs[3].any()


def test_groups_and_signatures_do_not_depend_on_order_or_sharding() -> None:
    corpus = _corpus()
    ids = list(corpus)
    reference_sigs, _ = signatures([corpus[i] for i in ids])
    reference = near_groups(ids, [corpus[i] for i in ids])
    for seed in range(3):
        shuffled = ids[:]
        random.Random(seed).shuffle(shuffled)
        assert near_groups(shuffled, [corpus[i] for i in shuffled]) == reference
        shards = [shuffled[k::3 + seed] for k in range(3 + seed)]  # each shard's signatures computed apart
        for shard in shards:
            sigs, _ = signatures([corpus[i] for i in shard])
            assert np.array_equal(sigs, reference_sigs[[ids.index(i) for i in shard]])


def test_kept_copy_same_in_any_order() -> None:
    members = [
        Member("PMC10/sec[0]/p[0]", "PMC10", "sec[0]/p[0]", version=1, educational_score=4.0, n_chars=900),
        Member("PMC20/sec[1]/p[2]", "PMC20", "sec[1]/p[2]", version=2, educational_score=3.0, n_chars=880),
        Member("PMC21/sec[1]/p[2]", "PMC21", "sec[1]/p[2]", version=2, educational_score=3.5, n_chars=870),
        Member("PMC30/sec[0]/p[0]", "PMC30", "sec[0]/p[0]", version=None, educational_score=5.0, n_chars=950),
    ]
    for perm in itertools.permutations(members):
        assert choose_kept(perm).id == "PMC21/sec[1]/p[2]"  # newest version, then the higher score


def test_star_rounds_on_the_fixture_edges_match_expected_groups() -> None:
    corpus = _corpus()
    ids = list(corpus)
    p = MinHashParams()
    sigs, _ = signatures(list(corpus.values()), p)
    edges = []
    for rows in _buckets(band_keys(sigs, p.bands, p.rows)).values():
        edges += bucket_edges([ids[r] for r in rows], sigs[rows], p.threshold)
    labels, rounds = star_rounds(edges)
    assert _as_groups(labels) == EXPECTED_NEAR
    assert rounds <= 3


def _buckets(keys: np.ndarray) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for row, row_keys in enumerate(keys.tolist()):
        for k in row_keys:
            out.setdefault(k, []).append(row)
    return {k: rows for k, rows in out.items() if len(rows) > 1}


@pytest.mark.parametrize("threshold", [0.95])
def test_a_stricter_threshold_splits_the_looser_copies(threshold: float) -> None:
    corpus = _corpus()
    groups = _as_groups(near_groups(list(corpus), list(corpus.values()), MinHashParams(threshold=threshold)))
    assert groups == {"PMC10/sec[0]/p[0]": {"PMC10/sec[0]/p[0]", "PMC30/sec[0]/p[0]"}}
