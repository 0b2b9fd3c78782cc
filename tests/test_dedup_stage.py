"""The dedup stage on the DirectRunner: edited copies group, template-sharing paragraphs are flagged and not
grouped, an article under two PMCIDs is one body, the kept copy follows the documented order and is the
same whatever the shard count and input order; curate's `dedup` parameter removes exactly the copies."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from pipeline.core.errors import ConfigError
from pipeline.core.workdir import Workdir
from pipeline.flow import status as flow_status
from pipeline.stages.curate import stage as C
from pipeline.stages.dedup.config import DedupConfig
from pipeline.stages.dedup.stage import run_dedup
from pipeline.stages.report import report
from tests.dedup_stage_helpers import write_workdir

COLUMNS = "id, exact_group, exact_rank, near_group, near_rank, group_size, group_articles, boilerplate, article_group, article_rank"


def rows(wd: Workdir) -> list[tuple]:
    return duckdb.sql(f"SELECT {COLUMNS} FROM '{wd.glob('duplicates')}' ORDER BY id").fetchall()


def by_id(wd: Workdir) -> dict[str, dict]:
    names = [c.strip() for c in COLUMNS.split(",")]
    return {r[0]: dict(zip(names, r, strict=True)) for r in rows(wd)}


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workdir, dict]:
    wd = write_workdir(tmp_path_factory.mktemp("dedup") / "w")
    return wd, run_dedup(wd, DedupConfig(workdir=str(wd.root)), [])


def test_edited_copies_group_and_the_newest_version_is_kept(plain: tuple[Workdir, dict]) -> None:
    d = by_id(plain[0])
    groups: dict[str, set[str]] = {}
    for pid, r in d.items():
        if r["near_group"]:
            groups.setdefault(r["near_group"], set()).add(pid)
    assert sorted(map(sorted, groups.values())) == sorted([
        ["PMC100/sec[0]/p[0]", "PMC101/sec[0]/p[0]", "PMC102/sec[0]/p[0]"],  # number and typo edits
        ["PMC100/sec[0]/p[1]", "PMC101/sec[0]/p[1]", "PMC102/sec[0]/p[2]"],  # reordered, exact copy
        ["PMC100/sec[0]/p[2]", "PMC102/sec[0]/p[1]"],  # two numbers changed
        ["PMC300/sec[0]/p[0]", "PMC301/sec[0]/p[0]"], ["PMC300/sec[0]/p[1]", "PMC301/sec[0]/p[1]"],
    ])  # fmt: skip
    # PMC102 is version 2: its copies are kept (rank 0) in every group it is in
    assert {pid for pid, r in d.items() if r["near_rank"] == 0 and pid.startswith("PMC1")} == {
        "PMC102/sec[0]/p[0]", "PMC102/sec[0]/p[1]", "PMC102/sec[0]/p[2]"}
    # the only exact copies: the tb paragraph and the article published twice
    assert d["PMC102/sec[0]/p[2]"]["exact_group"] == "PMC100/sec[0]/p[1]" and d["PMC102/sec[0]/p[2]"]["exact_rank"] == 0
    assert d["PMC100/sec[0]/p[1]"]["exact_rank"] == 1 and d["PMC101/sec[0]/p[1]"]["exact_group"] is None


def test_template_paragraphs_are_boilerplate_not_duplicates(plain: tuple[Workdir, dict]) -> None:
    d = by_id(plain[0])
    template = {pid: r for pid, r in d.items() if pid.startswith("PMC2")}
    assert len(template) == 12
    assert all(r["boilerplate"] and r["near_group"] is None and r["exact_group"] is None for r in template.values())
    assert not any(r["boilerplate"] for pid, r in d.items() if not pid.startswith("PMC2"))
    assert plain[1]["boilerplate_paragraphs"] == 12


def test_same_article_under_two_pmcids(plain: tuple[Workdir, dict]) -> None:
    d = by_id(plain[0])
    arts = {pid: (r["article_group"], r["article_rank"]) for pid, r in d.items() if r["article_group"]}
    assert arts == {"PMC300/sec[0]/p[0]": ("PMC300", 0), "PMC300/sec[0]/p[1]": ("PMC300", 0),
                    "PMC301/sec[0]/p[0]": ("PMC300", 1), "PMC301/sec[0]/p[1]": ("PMC300", 1)}  # fmt: skip
    s = plain[1]
    assert (s["exact_copies"], s["near_copies"], s["article_copies"], s["near_groups"]) == (3, 7, 1, 5)


def test_summary_records_parameters_and_says_the_order_fell_back(plain: tuple[Workdir, dict]) -> None:
    wd, s = plain
    on_disk = json.loads((wd.stages / "dedup.json").read_text())
    assert on_disk["parameters"]["bands"] == 16 and on_disk["parameters"]["rows"] == 8
    assert on_disk["parameters"]["shingle_words"] == 5 and on_disk["parameters"]["threshold"] == 0.7
    assert "no educational scores (no labels)" in s["keep_order"] and s["scores_from"] is None


def test_status_shows_the_copies_and_the_largest_group(plain: tuple[Workdir, dict]) -> None:
    entry = next(e for e in flow_status.collect(plain[0]) if e["command"] == "dedup")
    assert entry["findings"][0].startswith("duplicates: 3 exact copies, 7 near copies, 1 article copies; "
                                           "boilerplate 12 paragraphs (46.15%)")  # fmt: skip
    assert "largest group: 3 paragraphs in 3 articles, e.g. 'We enrolled 48 adults" in entry["findings"][1]
    assert "duplicates: 3 exact copies" in flow_status.render(flow_status.collect(plain[0]))


def test_same_rows_whatever_the_shards_and_input_order(plain: tuple[Workdir, dict], tmp_path: Path) -> None:
    other = write_workdir(tmp_path / "w", shards=4, seed=7)
    run_dedup(other, DedupConfig(workdir=str(other.root)), ["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    assert rows(other) == rows(plain[0])


def test_labels_order_the_kept_copy_and_curate_removes_the_copies(tmp_path: Path) -> None:
    # the article published twice has one version each: the higher educational score wins
    wd = write_workdir(tmp_path / "w", labels={"PMC301/sec[0]/p[0]": 5.0})
    s = run_dedup(wd, DedupConfig(workdir=str(wd.root), near=True), [])
    assert "highest educational score" in s["keep_order"] and s["scores_from"] == "labels"
    d = by_id(wd)
    assert d["PMC301/sec[0]/p[0]"]["exact_rank"] == 0 and d["PMC300/sec[0]/p[0]"]["exact_rank"] == 1
    base = C.curate(C.CurateConfig(workdir=str(wd.root), recipe="encoder", name="plain", export=False))
    exact = C.curate(C.CurateConfig(workdir=str(wd.root), recipe="encoder", name="exact", export=False,
                                    params=["dedup=exact"]))  # fmt: skip
    near = C.curate(C.CurateConfig(workdir=str(wd.root), recipe="encoder", name="near", export=False,
                                   params=["dedup=near"]))  # fmt: skip
    assert base["dedup"]["mode"] == "none" and "removed" not in base["dedup"] and base["stats"]["rows"] == 26
    assert base["dedup"]["stage"]["parameters"]["threshold"] == 0.7  # recorded even where not applied
    # exact: PMC301 (the article kept is PMC300: same version and length, smaller id), then the tb copy;
    # PMC300's paragraphs stay although PMC301/p[0] ranks first in its exact group: it is no longer selected
    assert exact["dedup"]["by_step"] == {"articles": 2, "exact": 1} and exact["stats"]["rows"] == 23
    assert exact["dedup"]["removed"]["paragraphs"] == 3
    # near: also the bp copies (2), the tb copy left (1) and the mri copy (1); template paragraphs stay
    assert near["dedup"]["by_step"] == {"articles": 2, "exact": 1, "near": 4} and near["stats"]["rows"] == 19
    assert near["dedup"]["removed"]["n_tokens"] > exact["dedup"]["removed"]["n_tokens"] > 0
    assert near["dedup"]["stage"]["parameters"]["bands"] == 16
    kept = {pid for (pid,) in duckdb.sql(f"SELECT paragraph_id FROM '{wd.subsets}/near/data/*.parquet'").fetchall()}
    assert "PMC102/sec[0]/p[0]" in kept and "PMC100/sec[0]/p[0]" not in kept and "PMC300/sec[0]/p[0]" in kept
    assert sum(1 for pid in kept if pid.startswith("PMC2")) == 12
    card = (wd.subsets / "near" / "README.md").read_text()
    assert "duplicates (`dedup=near`): 7 paragraphs" in card
    page = Path(report(wd.root)).read_text()
    assert "## Duplicates and benchmark contamination" in page and "7 near copies" in page


def test_bad_input_and_an_empty_workdir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="run `pmc-curate parse` first"):
        run_dedup(Workdir.of(tmp_path / "empty"), DedupConfig(workdir=str(tmp_path / "empty")), [])
    wd = write_workdir(tmp_path / "w")
    with pytest.raises(ConfigError, match="threshold"):
        run_dedup(wd, DedupConfig(workdir=str(wd.root), threshold=1.5), [])
    with pytest.raises(ConfigError, match="--labels labels: no labels table"):
        run_dedup(wd, DedupConfig(workdir=str(wd.root), labels="labels"), [])
    labelled = write_workdir(tmp_path / "l", labels={})
    with pytest.raises(ConfigError, match="run `pmc-curate dedup` first"):
        C.curate(C.CurateConfig(workdir=str(labelled.root), recipe="encoder", params=["dedup=near"]))
    with pytest.raises(ConfigError, match="run `pmc-curate decontaminate` first"):
        C.curate(C.CurateConfig(workdir=str(labelled.root), recipe="encoder", params=["decontaminate=true"]))
    with pytest.raises(ConfigError, match="dedup='fuzzy': expected one of none, exact, near"):
        C.curate(C.CurateConfig(workdir=str(labelled.root), recipe="encoder", params=["dedup=fuzzy"]))
    # without the tables the views are empty and the default parameters change nothing
    m = C.curate(C.CurateConfig(workdir=str(labelled.root), recipe="encoder", export=False))
    assert m["stats"]["rows"] == 26 and m["decontamination"] == {"enabled": False}


@pytest.mark.parametrize(("rounds", "converged"), [(1, False), (8, True)])
def test_components_rounds_and_the_convergence_check(rounds: int, converged: bool) -> None:
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to

    from beam_runners.options import make_pipeline
    from pipeline.dedup.components import star_rounds
    from pipeline.stages.dedup.transforms import Components

    # a path whose ids zig-zag (n07 - n00 - n06 - n01 - ...): one large/small-star round cannot finish it
    order = [f"n{i:02d}" for i in (7, 0, 6, 1, 5, 2, 4, 3, 9, 8, 12, 10, 11)]
    edges = list(zip(order, order[1:], strict=False))
    with make_pipeline([]) as p:
        labels, out_of_shape = p | beam.Create(edges) | Components(rounds)
        if converged:
            assert_that(labels, equal_to([(n, "n00") for n in order]), label="Labels")
            assert_that(out_of_shape, equal_to([0]), label="Shape")
        else:
            assert_that(out_of_shape | beam.Map(lambda n: n > 0), equal_to([True]), label="Shape")
    assert star_rounds(edges)[1] > 1  # the library's reference needs more than one round too
