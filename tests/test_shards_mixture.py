"""pipeline.shards.mixture: repeats as weights, exact token budgets, the mixture file of each trainer."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from pipeline.core.errors import ConfigError
from pipeline.shards import FORMATS, Component, apportion, from_repeats, open_writer, scale_to_target
from pipeline.shards.mixture import (
    megatron_blend,
    nanotron_weights,
    olmo_mix_text,
    olmo_source_mixture,
    write_megatron_blend,
    write_mixture_files,
)

EOS = 1
REPEATS = {"base": 1, "clinical": 10, "case": 100}


def component(fmt: str, root: Path, name: str, repeat: int, n_docs: int, seed: int) -> Component:
    rng = np.random.default_rng(seed)
    with open_writer(fmt, root / name, name, vocab_size=500, eos_id=EOS, max_tokens_per_shard=300,
                     tokenizer_name="bert-base-uncased") as w:  # fmt: skip
        for i in range(n_docs):
            w.add(rng.integers(2, 500, size=int(rng.integers(5, 80))), f"{name}-{i}")
    return Component(name, tuple(w.close()), repeat)


def recipe(fmt: str, root: Path) -> list[Component]:
    return [component(fmt, root, name, r, n_docs=60 // (k + 1), seed=k) for k, (name, r) in enumerate(REPEATS.items())]


def test_apportion_is_exact_with_ties_to_the_earlier():
    assert apportion(10, [1, 1, 1]) == [4, 3, 3]
    assert apportion(11, [1, 1, 1]) == [4, 4, 3]
    assert apportion(7, [0, 5, 0]) == [0, 7, 0]
    assert apportion(0, [3, 4]) == [0, 0]
    assert apportion(100, [1, 2, 3, 4]) == [10, 20, 30, 40]
    rng = np.random.default_rng(0)
    for _ in range(200):
        w = rng.integers(0, 10**9, size=int(rng.integers(1, 12))).tolist()
        if not any(w):
            continue
        total = int(rng.integers(0, 10**12))
        got = apportion(total, w)
        assert sum(got) == total
        for g, wi in zip(got, w, strict=True):  # each within one of its exact quota
            assert abs(Fraction(g) - Fraction(total * wi, sum(w))) < 1
    with pytest.raises(ValueError):
        apportion(5, [0, 0])


@pytest.mark.parametrize("fmt", FORMATS)
def test_weights_reproduce_the_repeats_exactly(fmt, tmp_path):
    comps = recipe(fmt, tmp_path)
    mix = from_repeats(comps)
    assert mix.total_tokens == sum(c.repeat * c.tokens for c in comps)
    assert mix.distinct_tokens == sum(c.tokens for c in comps)
    for cb, c in zip(mix.components, comps, strict=True):
        assert cb.budget == c.repeat * c.tokens and cb.epochs == c.repeat and cb.epochs_exact == c.repeat
        # every shard drawn `repeat` times
        assert list(cb.shard_budgets) == [c.repeat * s.tokens for s in c.shards]
    if fmt == "megatron":
        blend = megatron_blend(mix)
        total_w = sum(w for w, _ in blend)
        for c in comps:  # the normalised share of each component, times the total, is repeat x tokens
            mine = {s.trainer_path() for s in c.shards}
            share = Fraction(sum(w for w, p in blend if p in mine), total_w)
            assert share * mix.total_tokens == c.repeat * c.tokens
        assert all(Fraction(w, s) == r for (w, _), (s, r) in zip(blend, _shard_tokens(comps), strict=True))
    elif fmt == "olmo":
        lines = [ln for ln in olmo_mix_text(mix).splitlines() if not ln.startswith("#")]
        for c in comps:
            for s in c.shards:
                assert lines.count(f"{c.name},{s.trainer_path()}") == c.repeat
        assert len(lines) == sum(c.repeat * len(c.shards) for c in comps)
    else:
        nano = nanotron_weights(mix)
        assert nano["dataset_weights"] == [c.repeat * c.tokens for c in comps]
        assert nano["dataset_folder"] == [str((tmp_path / c.name).resolve()) for c in comps]


def _shard_tokens(comps):
    return [(s.tokens, c.repeat) for c in comps for s in c.shards]


def test_target_tokens_scales_exactly(tmp_path):
    comps = recipe("megatron", tmp_path)
    natural = sum(c.repeat * c.tokens for c in comps)
    # a whole multiple of the recipe keeps every ratio: epochs are the repeats times 3
    mix = scale_to_target(comps, 3 * natural)
    assert [c.budget for c in mix.components] == [3 * c.repeat * c.tokens for c in comps]
    assert [c.epochs for c in mix.components] == [3 * c.repeat for c in comps]
    # any other target: budgets sum to it exactly, each within one token of its exact quota
    for target in (1, 999_983, natural - 1, 33_600_000_000):
        mix = scale_to_target(comps, target)
        assert mix.total_tokens == target and mix.target_tokens == target
        for cb, c in zip(mix.components, comps, strict=True):
            assert abs(Fraction(cb.budget) - Fraction(target * c.repeat * c.tokens, natural)) < 1
            assert sum(cb.shard_budgets) == cb.budget
            assert cb.epochs == pytest.approx(cb.budget / c.tokens)
        assert sum(w for w, _ in megatron_blend(mix)) == target
    report = scale_to_target(comps, 33_600_000_000).report()
    assert [r["name"] for r in report] == list(REPEATS)
    assert {"tokens", "repeat", "budget_tokens", "epochs", "documents", "shards"} <= set(report[0])
    # the recipe's 10x and 100x survive scaling as ratios of epochs
    e = [r["epochs"] for r in report]
    assert e[1] / e[0] == pytest.approx(10, rel=1e-6) and e[2] / e[0] == pytest.approx(100, rel=1e-6)


def test_scaling_rounding_rule_on_a_tie(tmp_path):
    # three components of equal weight and 10 tokens to share: 4, 3, 3 (the tie goes to the earlier one)
    comps = [component("olmo", tmp_path, n, 1, 1, 0) for n in ("a", "b", "c")]  # same seed: same tokens
    assert len({c.tokens for c in comps}) == 1
    assert [c.budget for c in scale_to_target(comps, 10).components] == [4, 3, 3]


def test_olmo_fractional_epochs_need_the_source_mixture(tmp_path):
    comps = recipe("olmo", tmp_path)
    natural = sum(c.repeat * c.tokens for c in comps)
    mix = scale_to_target(comps, natural // 2 + 1)
    with pytest.raises(ConfigError, match="source mixture"):
        olmo_mix_text(mix)
    src = olmo_source_mixture(mix)
    assert src["requested_tokens"] == mix.total_tokens
    ratios = [s["target_ratio"] for s in src["source_list"]["sources"]]
    assert sum(ratios) == pytest.approx(1.0)
    for s, cb in zip(src["source_list"]["sources"], mix.components, strict=True):
        # OLMo-core checks int(population x max_repetition_ratio) >= int(requested x target_ratio)
        assert int(cb.tokens * s["max_repetition_ratio"]) >= int(src["requested_tokens"] * s["target_ratio"])
    files = write_mixture_files(mix, tmp_path / "mix", "be-all")
    assert [p.name for p in files] == ["be-all.olmo-source-mixture.json"]
    whole = write_mixture_files(from_repeats(comps), tmp_path / "mix", "be-all")
    assert [p.name for p in whole] == ["be-all.olmo-mix.txt", "be-all.olmo-source-mixture.json"]


def test_mixture_files_relocate_paths_under_a_remote_root(tmp_path):
    comps = recipe("megatron", tmp_path / "export")
    path = write_megatron_blend(from_repeats(comps), tmp_path / "blend.txt",
                                local_base=str(tmp_path / "export"), root="s3://bucket/run/exports/be-all")  # fmt: skip
    words = path.read_text().split()  # Megatron reads f.read().split()
    pairs = list(zip(words[::2], words[1::2], strict=True))
    assert all(p.startswith("s3://bucket/run/exports/be-all/") for _, p in pairs)
    assert pairs[0] == (str(comps[0].shards[0].tokens), "s3://bucket/run/exports/be-all/base/base-00000")
    files = write_mixture_files(from_repeats(comps), tmp_path, "m")
    assert [p.name for p in files] == ["m.megatron-data-args.txt", "m.megatron-per-split.json"]
    per_split = json.loads(files[1].read_text())
    assert per_split == {"train": files[0].read_text().split(), "valid": None, "test": None}


def test_zero_repeat_and_empty_components(tmp_path):
    comps = recipe("megatron", tmp_path)
    dropped = Component("dropped", comps[0].shards, 0)
    empty = Component("empty", (), 5)
    mix = from_repeats([dropped, empty, comps[1]])
    assert [c.budget for c in mix.components] == [0, 0, 10 * comps[1].tokens]
    assert [w for w, _ in megatron_blend(mix)] == [10 * s.tokens for s in comps[1].shards]
    with pytest.raises(ConfigError, match="empty mixture"):
        megatron_blend(from_repeats([dropped, empty]))
    with pytest.raises(ConfigError, match="nothing to scale"):
        scale_to_target([dropped, empty], 1000)


def test_bad_mixtures_are_refused(tmp_path):
    comps = recipe("datatrove", tmp_path)
    with pytest.raises(ConfigError, match="named base"):
        from_repeats([comps[0], comps[0]])
    with pytest.raises(ConfigError, match="repeat"):
        Component("x", comps[0].shards, -1)
    with pytest.raises(ConfigError, match="commas or whitespace"):
        Component("a,b", comps[0].shards)
    with pytest.raises(ConfigError, match="positive integer"):
        scale_to_target(comps, 0)
    with pytest.raises(ConfigError, match="lists .npy"):
        olmo_mix_text(from_repeats(comps))
    mixed = recipe("olmo", tmp_path / "o")
    with pytest.raises(ConfigError, match="one format"):
        megatron_blend(from_repeats([comps[0], mixed[1]]))
    # nanotron reads whole folders: two components in one folder would read each other's files
    with open_writer("datatrove", tmp_path / "base", "stray", vocab_size=500, eos_id=EOS, tokenizer_name="t") as w:
        w.add([3, 4], "stray-0")
    with pytest.raises(ConfigError, match="not component base's: stray-00000.ds"):
        nanotron_weights(from_repeats(comps))
    with pytest.raises(ConfigError, match="share the folder"):
        nanotron_weights(from_repeats([comps[1], Component("again", comps[1].shards)]))


def test_a_remote_root_for_several_folders_needs_the_local_base(tmp_path):
    comps = recipe("olmo", tmp_path)
    with pytest.raises(ConfigError, match="local_base"):
        olmo_mix_text(from_repeats(comps), root="s3://bucket/x")
    one = from_repeats(comps[:1])  # one folder: root stands for it
    assert olmo_mix_text(one, root="s3://bucket/x").splitlines()[-1] == f"base,s3://bucket/x/{comps[0].shards[-1].target}"


def test_shard_info_survives_a_manifest(tmp_path):
    from pipeline.shards import ShardInfo

    comps = recipe("megatron", tmp_path)
    for s in comps[0].shards:
        assert ShardInfo.from_dict(json.loads(json.dumps(s.to_dict()))) == s
