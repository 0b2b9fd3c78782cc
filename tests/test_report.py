"""Report: statistics checked exactly over the small corpus of test_curate, plots written, errors clear."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.core import labels as L
from pipeline.core.errors import ConfigError
from pipeline.stages.report import PAPER, report
from tests.test_curate import build_workdir


def test_report_numbers_and_page(tmp_path: Path) -> None:
    wd = build_workdir(tmp_path / "w")
    index = report(wd, threads=1)
    assert index == wd / "reports" / "index.md"
    data = json.loads((wd / "reports" / "stats.json").read_text())
    s = data["stats"]
    assert (s["articles"], s["paragraphs"], s["labelled_paragraphs"]) == (4, 11, 10)
    assert s["document_type"] == {"Study": 5, "Review": 2, "Other": 2, "Clinical case": 1}
    assert s["domain"] == {"clinical": 4, "biomedical": 4, "other": 2}
    # Most first, ties by name, so two runs on the same tables write the same page.
    assert list(s["document_type"]) == ["Study", "Other", "Review", "Clinical case"]
    assert list(s["domain"]) == ["biomedical", "clinical", "other"]
    assert s["educational_score_mean"] == pytest.approx(3.14)
    assert s["educational_score_median"] == pytest.approx(3.0)
    h = s["heterogeneity"]
    # PMC2 mixes types; PMC1 and PMC4 mix domains; ranges 3, 2, 1, 0.4.
    assert h["articles_considered"] == 4
    assert h["articles_mixing_types"] == pytest.approx(0.25)
    assert h["articles_mixing_domains"] == pytest.approx(0.5)
    assert h["mean_score_range_within_article"] == pytest.approx(1.6)
    lic = {x["license"]: (x["commercial"], x["articles"], x["paragraphs"]) for x in s["license"]}
    assert lic == {"CC BY": (True, 2, 7), "CC BY-NC": (False, 1, 2), "CC0": (True, 1, 2)}
    assert [x["license"] for x in s["license"]] == ["CC BY", "CC BY-NC", "CC0"]
    assert s["year"] == [{"year": 2019, "articles": 1}, {"year": 2020, "articles": 1}, {"year": 2021, "articles": 2}]
    cells = {(c["document_type"], c["domain"]): c["paragraphs"] for c in s["type_x_domain"]}
    assert cells[("Study", L.DOMAINS[0])] == 3 and sum(cells.values()) == 10
    assert s["unknown_label_values"] == {"document_type": [], "domain": []}
    page = index.read_text()
    for png in ("labels", "scores", "type_domain", "licenses", "years", "heterogeneity"):
        f = wd / "reports" / f"{png}.png"
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({png}.png)" in page
    assert f"| articles mixing paragraph types | 25.0% | {100 * PAPER['articles_mixing_types']:.1f}% |" in page
    assert "| mean score range within an article (points) | 1.60 | 2.6 |" in page


def test_report_lists_subsets_and_replaces_previous(tmp_path: Path) -> None:
    from pipeline.stages.curate import CurateConfig, curate

    wd = build_workdir(tmp_path / "w")
    report(wd)
    curate(CurateConfig(workdir=wd, recipe="be-clinical", export=False))
    page = report(wd).read_text()
    assert "| be-clinical | 46 | 4 | 13 |" in page
    assert sorted(p.name for p in wd.iterdir() if p.name.startswith(".")) == []


def test_report_with_annotations_and_missing_tables(tmp_path: Path) -> None:
    wd = build_workdir(tmp_path / "w", labels=False, annotations=True)
    with pytest.raises(ConfigError, match="labels table"):
        report(wd)
    assert not (wd / "reports").exists()
    report(wd, labels="annotations")
    s = json.loads((wd / "reports" / "stats.json").read_text())["stats"]
    assert s["labelled_paragraphs"] == 10 and s["educational_score_mean"] == pytest.approx(3.1)


def test_report_flags_label_values_outside_the_schema(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    wd = build_workdir(tmp_path / "w")
    t = pq.read_table(wd / "labels" / "part-0.parquet")
    types = t.column("document_type").to_pylist()
    types[0] = "clinical_case"
    t = t.set_column(t.column_names.index("document_type"), "document_type", [types])
    pq.write_table(t, wd / "labels" / "part-0.parquet")
    report(wd)
    assert "clinical_case" in (wd / "reports" / "index.md").read_text()


def test_report_keeps_other_stages_files_and_drops_its_own_stale_ones(tmp_path: Path) -> None:
    wd = build_workdir(tmp_path / "w")
    (wd / "reports").mkdir(parents=True)
    (wd / "reports" / "classifier.md").write_text("evaluate's report")
    report(wd)
    (wd / "reports" / "old-plot.png").write_bytes(b"x")
    own = json.loads((wd / "reports" / ".corpus-report-files.json").read_text())
    (wd / "reports" / ".corpus-report-files.json").write_text(json.dumps([*own, "old-plot.png"]))
    report(wd)
    assert (wd / "reports" / "classifier.md").read_text() == "evaluate's report"
    assert not (wd / "reports" / "old-plot.png").exists()
    assert (wd / "reports" / "index.md").exists()


def test_plots_read_honestly(tmp_path: Path) -> None:
    """Integer ticks for counts, the full 1-5 score range, a label on every bar (zeros too),
    colour never the only cue (hatched non-commercial bars), Okabe-Ito colours."""
    from pipeline.core.plots import OKABE_ITO, corpus_figures

    wd = build_workdir(tmp_path / "w")
    report(wd, threads=1)
    stats = json.loads((wd / "reports" / "stats.json").read_text())["stats"]
    stats["heterogeneity"]["articles_mixing_types"] = 0.0  # a zero bar must still be read
    figs = corpus_figures(stats, PAPER)
    years = figs["years"].axes[0]
    assert all(float(t).is_integer() for t in years.get_xticks()) and all(float(t).is_integer() for t in years.get_yticks())
    assert [t.get_text() for t in years.texts] == ["1", "1", "2"]  # articles per year, on the bars
    scores = figs["scores"].axes[0]
    lo, hi = scores.get_xlim()
    assert lo <= 1 and hi >= 5 and list(scores.get_xticks()) == [1, 2, 3, 4, 5]
    het = figs["heterogeneity"].axes[0]
    labels = [t.get_text() for t in het.texts]
    assert "0.0%" in labels and f"{100 * PAPER['articles_mixing_types']:.1f}%" in labels
    lic = figs["licenses"].axes[0]
    assert {p.get_hatch() for p in lic.patches} == {"", "//"}
    assert any("non-commercial" in t.get_text() for t in lic.get_yticklabels())
    colours = {matplotlib_hex(p.get_facecolor()) for f in figs.values() for a in f.axes for p in a.patches}
    assert colours - {"#ffffff"} <= {c.lower() for c in OKABE_ITO.values()}
    page = (wd / "reports" / "index.md").read_text()
    assert page.index("## Read this first") < page.index("## Beside the paper")
    assert "[classifier.md](classifier.md)" in page and "too few (under 30)" in page


def matplotlib_hex(rgba: tuple[float, ...]) -> str:
    from matplotlib.colors import to_hex

    return to_hex(rgba[:3])
