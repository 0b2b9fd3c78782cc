"""`annotate --gold`: the teacher against hand labels, texts re-parsed from the real articles; agreement metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.core import agreement
from pipeline.core.errors import ConfigError
from pipeline.stages.annotate.gold import DEFAULT_GOLD, load_gold
from tests.fakes.openai_server import FakeOpenAIServer
from tests.test_annotate import rows

HEADER = "id\tdocument_type\tdomain\teducational_score\tnote\n"


def test_agreement_metrics_on_hand_computed_cases() -> None:
    t = ["a", "a", "b", "b"]
    p = ["a", "b", "b", "b"]
    assert agreement.accuracy(t, p) == 0.75
    assert agreement.cohen_kappa(t, p, ["a", "b", "c"]) == pytest.approx(0.5)  # po .75, pe .5
    assert agreement.macro_f1(t, p, ["a", "b", "c"]) == pytest.approx((2 / 3 + 0.8) / 2)  # c absent: left out
    assert np.isnan(agreement.cohen_kappa(["a"] * 3, ["a"] * 3, ["a", "b"]))  # chance agreement 1: undefined
    x, y = [1, 2, 3, 5], [2, 4, 7, 9]
    assert agreement.pearson_r(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert np.isnan(agreement.pearson_r([3, 3, 3], [1, 2, 3]))
    assert agreement.mae([1, 2, 3], [2, 2, 5]) == pytest.approx(1.0)
    ref = [{"document_type": "Study", "domain": "clinical", "educational_score": 3}] * 2
    other = [{"document_type": "Study", "domain": "other", "educational_score": 4}] * 2
    r = agreement.agreement_report(ref, other)
    assert r["domain"]["accuracy"] == 0.0 and r["educational_score"]["mae"] == 1.0
    assert r["educational_score"]["within_1"] == 1.0 and r["document_type"]["confusion"][1][1] == 2
    assert "kappa" in agreement.format_report(r, "x")


def test_invalid_gold_rows_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "gold.tsv"
    bad.write_text(HEADER + "PMC1/sec[0]/p[0]\tEssay\tclinical\t3\tx\n")
    with pytest.raises(ConfigError, match="gold.tsv:2"):
        load_gold(bad)


@pytest.mark.shared_data
def test_gold_run_reports_agreement_and_reuses_the_cache(tmp_path: Path, shared_sample: Path) -> None:
    assert DEFAULT_GOLD.is_file(), f"the committed gold set {DEFAULT_GOLD} is missing"
    gold = load_gold(DEFAULT_GOLD)
    assert len(gold) >= 150
    subset = gold[:8]
    gold_file = tmp_path / "gold.tsv"
    gold_file.write_text(HEADER + "".join(
        f"{g['id']}\t{g['document_type']}\t{g['domain']}\t{g['educational_score']}\t\n" for g in subset))  # fmt: skip
    wd = tmp_path / "w"
    with FakeOpenAIServer() as server:
        args = ["annotate", "--workdir", str(wd), "--base-url", server.url, "--model", "teacher-x", "--no-progress",
                "--gold", "--gold-data", str(shared_sample)]  # fmt: skip
        assert main([*args, "--gold-file", str(gold_file)]) == 0
        report = json.loads((wd / "reports" / "gold-agreement-teacher-x.json").read_text())
        assert report["n"] == 8 and report["prompt_version"] == "v1"
        # the texts that reached the endpoint are the real paragraphs, parsed from the shared articles
        first = server.bodies[0]["messages"][-1]["content"]
        assert "<paragraph>" in first and len(first) > 300
        # gold labels identical to the teacher's -> perfect agreement, and no call paid twice
        teacher = rows(str(wd / "gold" / "teacher-x" / "annotations" / "*.parquet"))
        assert len(teacher) == 8
        same = tmp_path / "same.tsv"
        same.write_text(HEADER + "".join(
            f"{t['id']}\t{t['document_type']}\t{t['domain']}\t{t['educational_score']}\t\n" for t in teacher))  # fmt: skip
        before = sum(server.requests.values())
        assert main([*args, "--gold-file", str(same)]) == 0
        assert sum(server.requests.values()) == before
    perfect = json.loads((wd / "reports" / "gold-agreement-teacher-x.json").read_text())
    assert perfect["document_type"]["accuracy"] == 1.0 and perfect["domain"]["accuracy"] == 1.0
    assert perfect["educational_score"]["mae"] == 0.0
