"""Label tables checked at the door: curate and report validate the labels table before reading it.

Each bad table is the small corpus of tests.test_curate with one thing broken, the way a new user's
table would be: lowercase label values, no article_id, vectors of the wrong length, duplicate ids,
scores on another scale. A failure is a ConfigError naming the table and saying what to fix.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.core import labels as L
from pipeline.core.errors import ConfigError
from pipeline.core.label_tables import LabelTableCheck, check_labels_table
from pipeline.core.tables import connect
from pipeline.core.workdir import Workdir
from pipeline.stages import curate as C
from pipeline.stages.report import report
from tests.test_curate import build_workdir


def _rewrite(wd: Path, table: str, change: Callable[[pa.Table], pa.Table]) -> Path:
    """Replace every file of W/table by change(file's rows)."""
    for f in sorted((wd / table).glob("*.parquet")):
        pq.write_table(change(pq.read_table(f)), f)
    return wd


def _set(t: pa.Table, column: str, values: list, kind: pa.DataType | None = None) -> pa.Table:
    arr = pa.array(values, kind or t.schema.field(column).type)
    return t.set_column(t.column_names.index(column), column, arr)


def _curate(wd: Path, recipe: str = "be-clinicalcase", **kw) -> dict:
    return C.curate(C.CurateConfig(workdir=wd, recipe=recipe, threads=1, export=False, **kw))


def _check(wd: Path, source: str = "labels", **kw) -> LabelTableCheck:
    con = connect(Workdir.of(wd), tables=("paragraphs", source))
    try:
        return check_labels_table(con, source, table=str(wd / source), source=source, **kw)
    finally:
        con.close()


@pytest.fixture
def wd(tmp_path: Path) -> Path:
    return build_workdir(tmp_path / "w")


def test_a_valid_table_passes_and_counts_paragraphs_without_a_label(wd: Path) -> None:
    check = _check(wd)
    assert (check.rows, check.paragraphs_without_label, check.labels_without_paragraph) == (10, 1, 0)
    assert check.derived == () and check.unknown_values == {}


def test_lowercase_document_type_fails_listing_the_value_and_its_count(wd: Path, capsys) -> None:
    """BE-ClinicalCase on lowercase values used to upsample nothing and exit 0."""
    _rewrite(wd, "labels", lambda t: _set(t, "document_type", [
        v.lower() if v == "Clinical case" else v for v in t.column("document_type").to_pylist()]))  # fmt: skip
    with pytest.raises(ConfigError) as e:
        _curate(wd)
    msg = str(e.value)
    assert f"labels table {wd / 'labels'}" in msg
    assert "document_type: 1 row holds values outside the label schema: 'clinical case' (1)" in msg
    assert "did you mean 'clinical case' -> 'Clinical case'" in msg and "pipeline/core/labels.py" in msg
    assert not (wd / "subsets" / "be-clinicalcase").exists()
    from pipeline.cli import main

    assert main(["curate", "--workdir", str(wd), "--recipe", "be-clinicalcase"]) == 2
    err = capsys.readouterr().err
    assert "pmc-curate curate: error: labels table" in err and "'clinical case' (1)" in err


def test_unknown_values_are_counted_per_value_in_every_label_column(wd: Path) -> None:
    _rewrite(wd, "labels", lambda t: _set(_set(t, "document_type", ["case"] * 3 + ["Study"] * 7),
                                          "domain", ["Clinical"] * 2 + ["medicine"] * 5 + ["other"] * 3))  # fmt: skip
    with pytest.raises(ConfigError) as e:
        _check(wd)
    msg = str(e.value)
    assert "document_type: 3 rows hold values outside the label schema: 'case' (3)" in msg
    assert "domain: 7 rows hold values outside the label schema: 'medicine' (5), 'Clinical' (2)" in msg
    assert "'Clinical' -> 'clinical'" in msg


def test_missing_article_id_is_derived_from_the_paragraphs(wd: Path, tmp_path: Path) -> None:
    """A labels table without article_id used to fail with a raw BinderException."""
    ref = build_workdir(tmp_path / "ref")
    _rewrite(wd, "labels", lambda t: t.drop_columns(["article_id"]))
    assert _check(wd).derived == ("article_id",)
    for recipe in ("encoder", "be-all", "be-clinicalcase"):
        got, want = _curate(wd, recipe), _curate(ref, recipe)
        assert got["stats"] == want["stats"] and got["tokens"] == want["tokens"]
        new = pq.read_table(wd / "subsets" / recipe / "data")
        assert new.equals(pq.read_table(ref / "subsets" / recipe / "data"))
        assert set(new.column("pmcid").to_pylist()) <= {"PMC1", "PMC2", "PMC3", "PMC4"}
    assert "10" in got["stats"]["copies"]  # be-clinicalcase: PMC2's clinical case still upsamples its article
    report(wd)
    stats = json.loads((wd / "reports" / "stats.json").read_text())["stats"]
    assert stats["heterogeneity"]["articles_considered"] == 4  # per-article statistics need article_id


def test_missing_optional_columns_are_read_as_null(wd: Path) -> None:
    _rewrite(wd, "labels", lambda t: t.drop_columns(["document_type_scores", "domain_scores", "model_id"]))
    assert _check(wd).derived == ("document_type_scores", "domain_scores", "model_id")
    table = pq.read_table(wd / "subsets" / _curate(wd, "be-base")["name"] / "data")
    assert table.num_rows == 10 and table.column("domain_probs").null_count == 10


def test_missing_required_column_and_wrong_types_fail(wd: Path) -> None:
    _rewrite(wd, "labels", lambda t: t.drop_columns(["domain"]))
    with pytest.raises(ConfigError, match=r"missing column domain: a labels table needs id, document_type, domain, "
                                          r"educational_score \(article_id is derived"):  # fmt: skip
        _curate(wd)
    _rewrite(wd, "labels", lambda t: _set(t.append_column("domain", pa.array(["clinical"] * t.num_rows)),
                                          "document_type", [1] * t.num_rows, pa.int64()))  # fmt: skip
    with pytest.raises(ConfigError, match=r"column document_type is BIGINT; expected text \(VARCHAR\) \(label values"):
        _curate(wd)


@pytest.mark.parametrize("column", ["document_type_scores", "domain_scores"])
def test_probability_vectors_of_the_wrong_length_fail(wd: Path, column: str) -> None:
    n = len(L.HEADS_BY_NAME[column.removesuffix("_scores")].classes)
    _rewrite(wd, "labels", lambda t: _set(t, column, [[1 / (n + 1)] * (n + 1)] * 2 + [[1 / n] * n] * 8))
    with pytest.raises(ConfigError) as e:
        _curate(wd)
    assert f"{column}: 2 vectors of the wrong length (lengths seen: {n + 1} (2)); expected {n}" in str(e.value)


def test_probability_vectors_must_be_probabilities(wd: Path) -> None:
    bad = [[0.5, 0.5, 0.5, 0.5], [1.2, -0.2, 0.0, 0.0], [0.25, 0.25, None, 0.5]]
    _rewrite(wd, "labels", lambda t: _set(t, "document_type_scores", bad + [[0.25] * 4] * 7))
    with pytest.raises(ConfigError, match=r"document_type_scores: 3 vectors are not probabilities .* sum off 1 by more than 0.01"):
        _curate(wd)
    # rounded to 3 decimals (the bench corpus): within the tolerance
    _rewrite(wd, "labels", lambda t: _set(t, "document_type_scores", [[0.333, 0.333, 0.333, 0.0]] * 10))
    assert _check(wd).rows == 10


def test_duplicate_ids_fail_listing_them(wd: Path) -> None:
    _rewrite(wd, "labels", lambda t: pa.concat_tables([t, t.slice(0, 2), t.slice(0, 1)]))
    with pytest.raises(ConfigError) as e:
        _curate(wd)
    msg = str(e.value)
    assert "id: 2 paragraph ids have more than one row (3 extra rows; e.g. 'PMC1/sec[0]/p[10]' x3, " in msg
    assert "keep one row per paragraph id" in msg
    with pytest.raises(ConfigError, match="keep one row per paragraph id"):
        report(wd)  # the report checks the table too


def test_scores_out_of_range_fail(wd: Path) -> None:
    _rewrite(wd, "labels", lambda t: _set(t, "educational_score", [0.6, 0.8, 0.2, 1.0, 0.4, 0.6, 1.0, 0.8, 0.4, 0.5]))
    with pytest.raises(ConfigError, match=r"educational_score: 8 rows outside \[1, 5\] \(seen 0.2 to 1\); .* rescale"):
        _curate(wd)
    _rewrite(wd, "labels", lambda t: _set(t, "educational_score", [float("nan")] + [3.0] * 9))
    with pytest.raises(ConfigError, match=r"educational_score: 1 row outside \[1, 5\]"):
        _curate(wd)


def test_null_labels_ids_and_conflicting_article_ids_fail(wd: Path) -> None:
    def change(t: pa.Table) -> pa.Table:
        t = t.cast(pa.schema([f.with_nullable(True) for f in t.schema]))
        t = _set(t, "domain", [None] + t.column("domain").to_pylist()[1:])
        t = _set(t, "id", t.column("id").to_pylist()[:-1] + [None])
        return _set(t, "article_id", ["PMC9"] + t.column("article_id").to_pylist()[1:])

    _rewrite(wd, "labels", change)
    with pytest.raises(ConfigError) as e:
        _curate(wd)
    msg = str(e.value)
    assert "domain: 1 row has no value (NULL)" in msg
    assert "id: 1 row has no id (NULL)" in msg
    assert "article_id: 1 row disagrees with the paragraphs table's article_id" in msg


def test_labels_of_another_corpus_fail(wd: Path) -> None:
    _rewrite(wd, "labels", lambda t: _set(t, "id", [f"PMC99/p[{i}]" for i in range(t.num_rows)]))
    with pytest.raises(ConfigError, match="none of its 10 ids is a paragraph id of this work directory"):
        _curate(wd)


def test_report_lists_unknown_values_but_fails_on_broken_tables(wd: Path) -> None:
    _rewrite(wd, "labels", lambda t: _set(t, "document_type", ["clinical case"] + t.column("document_type").to_pylist()[1:]))
    check = _check(wd, allow_unknown_values=True)
    assert check.unknown_values == {"document_type": {"clinical case": 1}}
    report(wd)
    stats = json.loads((wd / "reports" / "stats.json").read_text())["stats"]
    assert stats["unknown_label_values"]["document_type"] == ["clinical case"]
    _rewrite(wd, "labels", lambda t: t.drop_columns(["educational_score"]))
    with pytest.raises(ConfigError, match="missing column educational_score"):
        report(wd)


def test_annotations_are_checked_too(tmp_path: Path) -> None:
    wd = build_workdir(tmp_path / "w", labels=False, annotations=True)
    assert _check(wd, "annotations").rows == 10
    _rewrite(wd, "annotations", lambda t: _set(t, "domain", [v.upper() for v in t.column("domain").to_pylist()]))
    with pytest.raises(ConfigError, match=rf"(?s)annotations table {wd / 'annotations'} does not match .*'CLINICAL' \(4\)"):
        _curate(wd, labels="annotations")
    with pytest.raises(ConfigError, match="annotations table"):
        _check(wd, "annotations")


def test_the_check_is_one_query_over_a_remote_table(s3_server, wd: Path) -> None:
    """On s3:// the same SQL runs through storage.duckdb_connect: a bad table fails before any work."""
    _rewrite(wd, "labels", lambda t: _set(t, "document_type", ["clinical case"] * t.num_rows))
    with s3_server.use():
        remote = Workdir.of(f"s3://{s3_server.bucket()}/run")
        for t in ("articles", "paragraphs", "labels"):
            remote.table(t).upload_from(wd / t)
        with pytest.raises(ConfigError, match=r"(?s)labels table s3://.*/run/labels .*'clinical case' \(10\)"):
            C.curate(C.CurateConfig(workdir=str(remote.root), recipe="be-clinicalcase", threads=1))
        assert not (remote.subsets / "be-clinicalcase").glob("**")
