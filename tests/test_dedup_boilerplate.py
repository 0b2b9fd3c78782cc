"""Boilerplate: template sentences counted across articles, large groups, and the kept-copy order."""

from __future__ import annotations

import itertools
from collections import defaultdict

import pytest

from pipeline.dedup.boilerplate import (
    BoilerplateParams,
    boilerplate_share,
    is_boilerplate_group,
    is_boilerplate_paragraph,
    is_common_sentence,
    sentence_hashes,
    split_sentences,
)
from pipeline.dedup.keep import Member, choose_kept, describe_order, keep_key
from pipeline.dedup.normalize import normalize_bytes, word_count
from tests.dedup_fixtures import BASE, TEMPLATE, distinct_sentence, template_paragraph


def test_split_sentences() -> None:
    text = "First sentence here. Second one (n = 3)! Is it 3.5 or 4? 2 patients died. e.g. lower case stays."
    assert split_sentences(text) == ["First sentence here.", "Second one (n = 3)!", "Is it 3.5 or 4?",
                                     "2 patients died. e.g. lower case stays."]  # fmt: skip


def test_sentence_hashes_skip_short_sentences_and_repeats() -> None:
    text = f"Data not shown. {TEMPLATE} {TEMPLATE}"
    hashes = sentence_hashes(text)
    assert len(hashes) == 1 and hashes[0][1] == word_count(normalize_bytes(TEMPLATE))
    assert sentence_hashes(TEMPLATE.upper())[0][0] == hashes[0][0]  # normalised like exact dedup


def _flag_paragraphs(paragraphs: dict[str, tuple[str, str]], params: BoilerplateParams) -> dict[str, float]:
    """What the stage does: count articles per sentence, then each paragraph's share in common sentences."""
    articles: dict[int, set[str]] = defaultdict(set)
    per_paragraph = {}
    for pid, (article, text) in paragraphs.items():
        per_paragraph[pid] = sentence_hashes(text, params)
        for h, _ in per_paragraph[pid]:
            articles[h].add(article)
    common = {h for h, arts in articles.items() if is_common_sentence(len(arts), params)}
    return {pid: boilerplate_share(s, common, word_count(normalize_bytes(paragraphs[pid][1]))) for pid, s in per_paragraph.items()}


def test_template_sentence_flagged_across_articles_not_within_one() -> None:
    params = BoilerplateParams()
    corpus = {f"PMC4{i:02d}/p[0]": (f"PMC4{i:02d}", template_paragraph(i)) for i in range(30)}
    corpus["PMC100/p[0]"] = ("PMC100", BASE["bp"])
    # one article repeating its own sentence 30 times is not a template
    own = distinct_sentence(7, 30)
    corpus.update({f"PMC200/sec[{i}]/p[0]": ("PMC200", f"{own} {distinct_sentence(500 + i)}") for i in range(30)})
    shares = _flag_paragraphs(corpus, params)
    for i in range(30):
        share = shares[f"PMC4{i:02d}/p[0]"]
        assert 0.5 <= share < 1.0 and is_boilerplate_paragraph(share, params)
        assert shares[f"PMC200/sec[{i}]/p[0]"] == 0.0
    assert shares["PMC100/p[0]"] == 0.0
    # the same template in only 9 articles is below the default threshold
    few = {k: v for k, v in list(corpus.items())[:9]}
    assert set(_flag_paragraphs(few, params).values()) == {0.0}


def test_boilerplate_groups() -> None:
    assert not is_boilerplate_group(2, 2)  # an article published twice
    assert is_boilerplate_group(12, 10)
    assert is_boilerplate_group(150, 3)  # e.g. one note repeated under every table of a few articles
    assert not is_boilerplate_group(12, 10, BoilerplateParams(group_min_articles=20))


def test_boilerplate_share_bounds() -> None:
    assert boilerplate_share([(1, 10)], {1}, 0) == 0.0
    assert boilerplate_share([(1, 10), (2, 5)], {1, 2}, 12) == 1.0
    assert boilerplate_share([(1, 10), (2, 5)], {2}, 20) == pytest.approx(0.25)


def test_keep_order_steps() -> None:
    def m(pid: str, **kw: object) -> Member:
        article, path = pid.split("/", 1)
        return Member(pid, article, path, **kw)

    # newest version wins over score and length
    assert choose_kept([m("A/p[0]", version=1, educational_score=5, n_chars=999), m("B/p[0]", version=2)]).id == "B/p[0]"
    # then the score, where present
    assert choose_kept([m("A/p[0]", educational_score=3.0, n_chars=999), m("B/p[0]", educational_score=4.0)]).id == "B/p[0]"
    assert choose_kept([m("A/p[0]"), m("B/p[0]", educational_score=1.0)]).id == "B/p[0]"
    # then the length
    assert choose_kept([m("A/p[0]", n_chars=10), m("B/p[0]", n_chars=20)]).id == "B/p[0]"
    # then (article_id, path)
    members = [m("B/p[0]", n_chars=5), m("A/sec[1]/p[0]", n_chars=5), m("A/sec[0]/p[3]", n_chars=5)]
    for perm in itertools.permutations(members):
        assert choose_kept(perm).id == "A/sec[0]/p[3]"
    assert keep_key("A", "p", version=3) < keep_key("A", "p", version=2) < keep_key("A", "p")
    with pytest.raises(ValueError, match="empty group"):
        choose_kept([])


def test_describe_order_says_what_it_fell_back_from() -> None:
    full = describe_order(has_versions=True, has_scores=True)
    assert full == "kept copy: newest version, then highest educational score, then longest, then (article_id, path)"
    bare = describe_order(has_versions=True, has_scores=False)
    assert "highest educational score" not in bare and "no educational scores (no labels)" in bare
