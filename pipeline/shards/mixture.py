"""Upsampling as mixture weights, not copied bytes, and exact token budgets.

Each distinct document set (a *component*: e.g. the articles a recipe repeats 10x) is written once;
how often a trainer should see it becomes a weight in the trainer's mixture file:

| trainer | file | how a repeat is expressed |
|---|---|---|
| OLMo-core | mix list, `label,path` per line (`write_olmo_mix`) | the component's files listed `epochs` times, as OLMo's own mixes up-sample (`src/olmo_core/data/mixes/*.txt`); whole epochs only |
| OLMo-core | source mixture JSON (`write_olmo_source_mixture`) | `target_ratio` + `max_repetition_ratio` per source for `SourceMixtureDatasetConfig(requested_tokens=N)`; fractional epochs |
| Megatron-LM | data-args list `W1 PREFIX1 W2 PREFIX2 ...` (`write_megatron_blend`) | weight = tokens to draw from that dataset |
| nanotron | `dataset_folder` + `dataset_weights` (`write_nanotron_weights`) | weight = tokens to draw from that folder |

Megatron and nanotron normalise the weights into sampling shares of fixed-length sequences, so a
weight proportional to *tokens drawn* gives each component its share of the budget; the trainer's
total (Megatron `--train-samples`, nanotron `train_steps` x batch) must be the mixture's total tokens /
sequence length for the epochs to come out as planned.

Budgets:
- `from_repeats(components)`: component i is drawn `repeat_i` times: budget_i = repeat_i x tokens_i,
  exactly the recipe's repeats.
- `scale_to_target(components, N)`: the same proportions scaled to exactly N tokens. The rounding rule
  is Hamilton's (largest remainder, as OLMo-core's `SourceMixtureDatasetConfig` apportions instances):
  each component gets floor(N x w_i / W) tokens, w_i = repeat_i x tokens_i, W = sum w; the tokens left
  over go one each to the components with the largest remainders, ties to the earlier component. The
  budgets sum to N exactly; effective epochs = budget_i / tokens_i. Within a component the budget is
  apportioned to its shards by the same rule, by shard tokens (Megatron weighs each shard).
All arithmetic is on integers; no float ever decides a token.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError
from pipeline.shards.common import OutputDir, ShardInfo


@dataclass(frozen=True)
class Component:
    """A distinct document set written once: its shards (one format) and the recipe's repeat factor."""

    name: str
    shards: tuple[ShardInfo, ...]
    repeat: int = 1

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in ",\n\r \t"):
            raise ConfigError(f"component name {self.name!r}: no commas or whitespace (mix files split on them)")
        if not isinstance(self.repeat, int) or self.repeat < 0:
            raise ConfigError(f"component {self.name}: repeat must be an integer >= 0, got {self.repeat!r}")
        formats = {s.format for s in self.shards}
        if len(formats) > 1:
            raise ConfigError(f"component {self.name} mixes shard formats: {', '.join(sorted(formats))}")

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.shards)

    @property
    def documents(self) -> int:
        return sum(s.documents for s in self.shards)


@dataclass(frozen=True)
class ComponentBudget:
    """A component with the tokens a trainer should draw from it (`budget`) and from each shard."""

    component: Component
    budget: int
    shard_budgets: tuple[int, ...]

    @property
    def name(self) -> str:
        return self.component.name

    @property
    def tokens(self) -> int:
        return self.component.tokens

    @property
    def epochs_exact(self) -> Fraction:
        return Fraction(self.budget, self.tokens) if self.tokens else Fraction(0)

    @property
    def epochs(self) -> float:
        """Effective epochs: how many times the trainer sees the component (budget / distinct tokens)."""
        return float(self.epochs_exact)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shards": len(self.component.shards),
            "documents": self.component.documents,
            "tokens": self.tokens,
            "repeat": self.component.repeat,
            "budget_tokens": self.budget,
            "epochs": self.epochs,
        }


@dataclass(frozen=True)
class Mixture:
    """Components with their budgets; `total_tokens` is what a trainer should train on."""

    components: tuple[ComponentBudget, ...]
    target_tokens: int | None = None

    @property
    def total_tokens(self) -> int:
        return sum(c.budget for c in self.components)

    @property
    def distinct_tokens(self) -> int:
        return sum(c.tokens for c in self.components)

    @property
    def format(self) -> str:
        formats = {s.format for c in self.components for s in c.component.shards}
        if len(formats) != 1:
            raise ConfigError(f"a mixture file holds shards of one format; these have {sorted(formats) or 'none'}")
        return formats.pop()

    def drawn(self) -> list[ComponentBudget]:
        """The components a trainer draws from (budget > 0)."""
        return [c for c in self.components if c.budget > 0]

    def report(self) -> list[dict[str, Any]]:
        """One dict per component: shards, documents, tokens, repeat, budget_tokens, epochs."""
        return [c.to_dict() for c in self.components]


def apportion(total: int, weights: Sequence[int]) -> list[int]:
    """Split `total` into integers proportional to `weights`, summing to `total` exactly.

    Hamilton's largest-remainder method: floor of each exact quota, then one more to the largest
    remainders; equal remainders go to the earlier weight.
    """
    if total < 0 or any(w < 0 for w in weights):
        raise ValueError("apportion needs a total and weights >= 0")
    wsum = sum(weights)
    if wsum == 0:
        if total:
            raise ValueError(f"cannot apportion {total} over weights that are all 0")
        return [0] * len(weights)
    floors = [total * w // wsum for w in weights]
    remainders = [total * w % wsum for w in weights]
    left = total - sum(floors)
    for i in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:left]:
        floors[i] += 1
    return floors


def _budget(c: Component, budget: int) -> ComponentBudget:
    if c.repeat and budget and c.tokens == 0:
        raise ConfigError(f"component {c.name} has no tokens to draw {budget:,} from")
    return ComponentBudget(c, budget, tuple(apportion(budget, [s.tokens for s in c.shards])))


def _check_names(components: Sequence[Component]) -> None:
    seen: set[str] = set()
    for c in components:
        if c.name in seen:
            raise ConfigError(f"two mixture components are named {c.name}")
        seen.add(c.name)


def from_repeats(components: Sequence[Component]) -> Mixture:
    """The recipe's own mixture: component i drawn exactly `repeat_i` times."""
    _check_names(components)
    return Mixture(tuple(_budget(c, c.repeat * c.tokens) for c in components))


def scale_to_target(components: Sequence[Component], target_tokens: int) -> Mixture:
    """The recipe's proportions scaled to exactly `target_tokens` (see the module docstring for the rule)."""
    _check_names(components)
    if not isinstance(target_tokens, int) or target_tokens < 1:
        raise ConfigError(f"target tokens must be a positive integer, got {target_tokens!r}")
    weights = [c.repeat * c.tokens for c in components]
    if sum(weights) == 0:
        raise ConfigError("nothing to scale: every component is empty or repeated 0 times")
    budgets = apportion(target_tokens, weights)
    return Mixture(tuple(_budget(c, b) for c, b in zip(components, budgets, strict=True)), target_tokens)


# ---------------------------------------------------------------------------------------------------
# Mixture files


def _path(shard: ShardInfo, local_base: str | os.PathLike[str] | None, root: str | None) -> str:
    """The shard's trainer-facing path: under `root` at its place relative to `local_base`, or local."""
    if root is None:
        return shard.trainer_path()
    base = Path(local_base) if local_base is not None else None
    directory = Path(shard.directory).resolve()
    if base is None:
        rel = ""
    else:
        try:
            rel = directory.relative_to(base.resolve()).as_posix()
        except ValueError:
            raise ConfigError(f"shard {shard.name} is in {directory}, not under {base}") from None
    prefix = root.rstrip("/") + ("/" + rel if rel and rel != "." else "")
    return shard.trainer_path(prefix)


def _drawn_or_fail(mixture: Mixture, local_base: str | os.PathLike[str] | None, root: str | None) -> list[ComponentBudget]:
    drawn = mixture.drawn()
    if not drawn:
        raise ConfigError("an empty mixture: no component has tokens to draw")
    _ = mixture.format  # one format, or a ConfigError
    if root is not None and local_base is None:
        dirs = {str(Path(s.directory).resolve()) for c in drawn for s in c.component.shards}
        if len(dirs) > 1:
            raise ConfigError(
                f"the shards are in {len(dirs)} folders: give local_base, the local folder that `root` stands for"
            )
    return drawn


def _write(path: str | os.PathLike[str], text: str) -> Path:
    p = Path(path)
    OutputDir(p.parent).write_bytes(p.name, text.encode("utf-8"))
    return p


def _header(mixture: Mixture) -> list[str]:
    lines = [f"# pmc-curate mixture: {len(mixture.drawn())} components, {mixture.total_tokens:,} tokens to train on "
             f"({mixture.distinct_tokens:,} distinct, EOS tokens included)"]  # fmt: skip
    if mixture.target_tokens is not None:
        lines.append(f"# scaled to a target of {mixture.target_tokens:,} tokens (largest-remainder rounding)")
    for c in mixture.components:
        lines.append(f"# {c.name}: {c.tokens:,} tokens x {c.epochs:.6g} epochs = {c.budget:,} (recipe repeat {c.component.repeat})")
    return lines


def olmo_mix_text(mixture: Mixture, *, local_base: str | None = None, root: str | None = None) -> str:
    """An OLMo-core mix list: `label,path` lines, each component's files listed once per epoch.

    Whole epochs only: a budget that is not a whole number of epochs is a ConfigError (use
    `write_olmo_source_mixture`, or a target that gives whole epochs).
    """
    drawn = _drawn_or_fail(mixture, local_base, root)
    if mixture.format != "olmo":
        raise ConfigError(f"an OLMo mix lists .npy files; these shards are {mixture.format}")
    lines = _header(mixture)
    for c in drawn:
        epochs = c.epochs_exact
        if epochs.denominator != 1:
            raise ConfigError(
                f"component {c.name} is to be drawn {float(epochs):.4f} times; an OLMo mix list repeats whole "
                "files: write an OLMo-core source mixture (write_olmo_source_mixture) instead"
            )
        for _ in range(epochs.numerator):
            for s in c.component.shards:
                path = _path(s, local_base, root)
                if "," in path:
                    raise ConfigError(f"{path}: OLMo-core splits mix lines on ',', so a path cannot hold one")
                lines.append(f"{c.name},{path}")
    return "\n".join(lines) + "\n"


def write_olmo_mix(mixture: Mixture, path: str | os.PathLike[str], **where: Any) -> Path:
    """Write `olmo_mix_text` to `path` atomically (`local_base=`, `root=` relocate the paths)."""
    return _write(path, olmo_mix_text(mixture, **where))


def olmo_source_mixture(mixture: Mixture, *, local_base: str | None = None, root: str | None = None) -> dict[str, Any]:
    """OLMo-core's `SourceMixtureDatasetConfig` fields for this mixture (src/olmo_core/data/source_mixture.py).

    `target_ratio` = budget / total, `max_repetition_ratio` = epochs (at least 1). OLMo-core rounds each
    source to whole instances of `sequence_length` tokens, so a source's count can differ from its budget
    by less than one sequence per file.
    """
    drawn = _drawn_or_fail(mixture, local_base, root)
    total = mixture.total_tokens
    sources = []
    for c in drawn:
        sources.append({
            "source_name": c.name,
            "target_ratio": c.budget / total,
            "paths": [_path(s, local_base, root) for s in c.component.shards],
            # a hair above the exact epochs, so that OLMo-core's float product never falls one token short
            "max_repetition_ratio": max(1.0, float(c.epochs_exact) * (1 + 1e-9)),
        })  # fmt: skip
    return {"requested_tokens": total, "source_list": {"sources": sources}}


def write_olmo_source_mixture(mixture: Mixture, path: str | os.PathLike[str], **where: Any) -> Path:
    """Write `olmo_source_mixture` as JSON (also valid YAML) to `path` atomically."""
    return _write(path, json.dumps(olmo_source_mixture(mixture, **where), indent=2) + "\n")


def megatron_blend(mixture: Mixture, *, local_base: str | None = None, root: str | None = None) -> list[tuple[int, str]]:
    """(weight, prefix) per Megatron dataset: the tokens to draw from each shard."""
    drawn = _drawn_or_fail(mixture, local_base, root)
    if mixture.format != "megatron":
        raise ConfigError(f"a Megatron blend lists .bin/.idx prefixes; these shards are {mixture.format}")
    blend = []
    for c in drawn:
        for s, b in zip(c.component.shards, c.shard_budgets, strict=True):
            if b == 0:
                continue
            path = _path(s, local_base, root)
            if any(ch.isspace() for ch in path):
                raise ConfigError(f"{path}: Megatron splits --data-args-path files on whitespace")
            blend.append((b, path))
    return blend


def write_megatron_blend(mixture: Mixture, path: str | os.PathLike[str], **where: Any) -> Path:
    """Write the blend as a `--data-args-path` file: `W1 PREFIX1` per line (Megatron reads
    `f.read().split()`, so no comments). Pass the same list to `--data-path` if you prefer."""
    return _write(path, "".join(f"{w} {p}\n" for w, p in megatron_blend(mixture, **where)))


def write_megatron_per_split(mixture: Mixture, path: str | os.PathLike[str], **where: Any) -> Path:
    """Write a `--per-split-data-args-path` JSON: the blend as `train`, `valid` and `test` left null."""
    flat = [x for w, p in megatron_blend(mixture, **where) for x in (str(w), p)]
    return _write(path, json.dumps({"train": flat, "valid": None, "test": None}, indent=2) + "\n")


def nanotron_weights(mixture: Mixture, *, local_base: str | None = None, root: str | None = None) -> dict[str, Any]:
    """nanotron's `NanosetDatasetsArgs` fields: one folder per component, weight = tokens to draw."""
    drawn = _drawn_or_fail(mixture, local_base, root)
    if mixture.format != "datatrove":
        raise ConfigError(f"nanotron reads folders of .ds files; these shards are {mixture.format}")
    folders: list[str] = []
    owner: dict[str, str] = {}
    for c in mixture.components:
        dirs = {str(Path(s.directory).resolve()) for s in c.component.shards}
        if len(dirs) > 1:
            raise ConfigError(f"component {c.name} spans {len(dirs)} folders; nanotron reads one folder per dataset")
        for d in dirs:
            if d in owner:
                raise ConfigError(
                    f"components {owner[d]} and {c.name} share the folder {d}; nanotron reads every .ds of a "
                    "folder, so write each component into its own folder"
                )
            owner[d] = c.name
            mine = {s.target for s in c.component.shards}
            foreign = sorted(p.name for p in Path(d).glob("*.ds") if p.name not in mine)
            if foreign:
                raise ConfigError(f"{d} holds .ds files that are not component {c.name}'s: {', '.join(foreign[:3])}")
    for c in drawn:
        s = c.component.shards[0]
        folders.append(_path(s, local_base, root).rsplit("/", 1)[0])
    return {"dataset_folder": folders, "dataset_weights": [c.budget for c in drawn]}


def write_nanotron_weights(mixture: Mixture, path: str | os.PathLike[str], **where: Any) -> Path:
    """Write `nanotron_weights` as JSON (also valid YAML, for `data_stages[].data.dataset`)."""
    return _write(path, json.dumps(nanotron_weights(mixture, **where), indent=2) + "\n")


def write_mixture_files(mixture: Mixture, out_dir: str | os.PathLike[str], stem: str, **where: Any) -> list[Path]:
    """Every mixture file of the shards' format, named after `stem`:
    - olmo: `{stem}.olmo-mix.txt` (only when every epoch count is whole) and `{stem}.olmo-source-mixture.json`;
    - megatron: `{stem}.megatron-data-args.txt` and `{stem}.megatron-per-split.json`;
    - datatrove: `{stem}.nanotron.json`.
    """
    d = Path(out_dir)
    fmt = mixture.format
    if fmt == "olmo":
        written = []
        if all(c.epochs_exact.denominator == 1 for c in mixture.drawn()):
            written.append(write_olmo_mix(mixture, d / f"{stem}.olmo-mix.txt", **where))
        written.append(write_olmo_source_mixture(mixture, d / f"{stem}.olmo-source-mixture.json", **where))
        return written
    if fmt == "megatron":
        return [write_megatron_blend(mixture, d / f"{stem}.megatron-data-args.txt", **where),
                write_megatron_per_split(mixture, d / f"{stem}.megatron-per-split.json", **where)]  # fmt: skip
    return [write_nanotron_weights(mixture, d / f"{stem}.nanotron.json", **where)]
