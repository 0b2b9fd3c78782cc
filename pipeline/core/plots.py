"""Plots shared by the reports: the colour-blind-safe palette, labelled bars on integer axes, and the
corpus report's figures (pmc-curate report: W/reports/*.png).

Rules every figure here follows: counts on integer axes, the count written on each bar (a zero bar
is labelled, so it is read rather than missed), the full 1-5 score range, Okabe-Ito colours and
never colour as the only cue (hatches and words too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.core import labels as label_schema


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# Okabe & Ito's colour-blind-safe palette (https://jfly.uni-koeln.de/color/).
OKABE_ITO = {"blue": "#0072B2", "orange": "#E69F00", "green": "#009E73", "vermillion": "#D55E00",
             "sky": "#56B4E9", "purple": "#CC79A7", "yellow": "#F0E442", "black": "#000000"}


def _label_bars(ax: Any, bars: Any, values: list[Any]) -> None:
    """The count on each bar (zero bars too, so that a zero is read, not missed), outlined bars."""
    for b in bars:
        b.set_edgecolor("black")
        b.set_linewidth(0.6)
    ax.bar_label(bars, labels=[f"{v:,}" for v in values], fontsize=7, padding=2)


def _integer_axis(axis: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def corpus_plots(stats: dict[str, Any], paper: dict[str, Any], folder: Path) -> dict[str, str]:
    """PNG files of the corpus report in `folder`; returns {name: file name}."""
    plt = pyplot()
    files: dict[str, str] = {}
    for name, fig in corpus_figures(stats, paper).items():
        fig.tight_layout()
        fig.savefig(folder / f"{name}.png", dpi=100)
        plt.close(fig)
        files[name] = f"{name}.png"
    return files


def corpus_figures(stats: dict[str, Any], paper: dict[str, Any]) -> dict[str, Any]:
    """The corpus report's figures, by name (open matplotlib figures: the caller saves and closes them).
    Counts on integer axes, values on the bars, the full 1-5 score range, Okabe-Ito colours (never
    colour alone: hatches and labels too)."""
    plt = pyplot()
    figures: dict[str, Any] = {}

    def save(fig: Any, name: str) -> None:
        figures[name] = fig

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, order in ((axes[0], "document_type", label_schema.DOCUMENT_TYPES),
                           (axes[1], "domain", label_schema.DOMAINS)):  # fmt: skip
        keys = list(order) + [k for k in stats[key] if k not in order]
        values = [stats[key].get(k, 0) for k in keys]
        _label_bars(ax, ax.bar([str(k) for k in keys], values, color=OKABE_ITO["blue"]), values)
        _integer_axis(ax.yaxis)
        ax.margins(y=0.15)
        ax.set_ylabel("paragraphs")
        ax.set_title(f"{key} (paragraphs)")
    save(fig, "labels")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    hist = [h for h in stats["score_histogram"] if h["bin"] is not None]
    values = [h["paragraphs"] for h in hist]
    _label_bars(ax, ax.bar([h["bin"] for h in hist], values, width=0.23, align="edge", color=OKABE_ITO["green"]), values)
    mean = stats["educational_score_mean"]
    if mean is not None:
        ax.axvline(mean, color="k", ls="--", label=f"mean {mean:.2f}")
    ax.axvline(paper["educational_score_mean"], color=OKABE_ITO["vermillion"], ls=":",
               label=f"paper mean {paper['educational_score_mean']}")
    ax.set_xlim(label_schema.SCORE_MIN - 0.1, label_schema.SCORE_MAX + 0.35)  # the full scale, whatever this sample spans
    ax.set_xticks(range(int(label_schema.SCORE_MIN), int(label_schema.SCORE_MAX) + 1))
    _integer_axis(ax.yaxis)
    ax.margins(y=0.15)
    ax.set_xlabel("educational score")
    ax.set_ylabel("paragraphs")
    ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2, frameon=False)  # above: never over a bar
    save(fig, "scores")

    types, domains = list(label_schema.DOCUMENT_TYPES), list(label_schema.DOMAINS)
    grid = [[0] * len(domains) for _ in types]
    for cell in stats["type_x_domain"]:
        if cell["document_type"] in types and cell["domain"] in domains:
            grid[types.index(cell["document_type"])][domains.index(cell["domain"])] = cell["paragraphs"]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    im = ax.imshow(grid, cmap="cividis")
    ax.set_xticks(range(len(domains)), domains)
    ax.set_yticks(range(len(types)), types)
    top = max(max(row) for row in grid) or 1
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:,}", ha="center", va="center", color="black" if v > top / 2 else "white")
    fig.colorbar(im, ax=ax, format="{x:,.0f}")
    ax.set_title("document type x domain (paragraphs)")
    save(fig, "type_domain")

    fig, ax = plt.subplots(figsize=(7, 3.5))
    lic = stats["license"]
    bars = ax.barh([f"{x['license']} ({'commercial' if x['commercial'] else 'non-commercial'})" for x in lic],
                   [x["articles"] for x in lic],
                   color=[OKABE_ITO["blue"] if x["commercial"] else OKABE_ITO["orange"] for x in lic],
                   hatch=["" if x["commercial"] else "//" for x in lic])  # fmt: skip
    _label_bars(ax, bars, [x["articles"] for x in lic])
    _integer_axis(ax.xaxis)
    ax.margins(x=0.15)
    ax.invert_yaxis()
    ax.set_xlabel("articles (blue, plain: commercial use allowed; orange, hatched: not)")
    save(fig, "licenses")

    fig, ax = plt.subplots(figsize=(7, 3.5))
    years = [y for y in stats["year"] if y["year"] is not None]
    values = [y["articles"] for y in years]
    _label_bars(ax, ax.bar([y["year"] for y in years], values, color=OKABE_ITO["purple"]), values)
    _integer_axis(ax.xaxis)
    _integer_axis(ax.yaxis)
    ax.margins(y=0.15)
    ax.set_xlabel("year")
    ax.set_ylabel("articles")
    save(fig, "years")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    h = stats["heterogeneity"]
    names = ["mixing types", "mixing domains"]
    ours = [h["articles_mixing_types"], h["articles_mixing_domains"]]
    theirs_v = [paper["articles_mixing_types"], paper["articles_mixing_domains"]]
    x = range(len(names))
    mine = ax.bar([i - 0.2 for i in x], [v or 0 for v in ours], width=0.4, color=OKABE_ITO["blue"],
                  label=f"this corpus ({h['articles_considered']:,} articles)")
    theirs = ax.bar([i + 0.2 for i in x], theirs_v, width=0.4, color=OKABE_ITO["orange"], hatch="//",
                    label="Biomed-Enriched")
    for b in (*mine, *theirs):
        b.set_edgecolor("black")
    ax.bar_label(mine, labels=["n/a" if v is None else f"{100 * v:.1f}%" for v in ours], fontsize=8, padding=2)
    ax.bar_label(theirs, labels=[f"{100 * v:.1f}%" for v in theirs_v], fontsize=8, padding=2)
    ax.set_xticks(list(x), names)
    ax.set_ylabel("share of articles")
    ax.set_ylim(0, 1.12)
    ax.legend(loc="upper right", fontsize=8)
    save(fig, "heterogeneity")
    return figures
