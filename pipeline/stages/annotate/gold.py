"""`annotate --gold` and `--compare`: agreement of a teacher with the hand-labelled gold set, or of two teachers."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from pipeline.core import agreement, tables
from pipeline.core.errors import ConfigError
from pipeline.core.labels import HEADS
from pipeline.core.records import Reject
from pipeline.core.storage import Location
from pipeline.core.workdir import Workdir
from pipeline.teacher.prompt import PROMPTS_ROOT
from pipeline.teacher.reply import validate_labels

DEFAULT_GOLD = PROMPTS_ROOT / "biomed-labels" / "gold.tsv"


def load_gold(path: Path) -> list[dict[str, Any]]:
    """Hand labels: TSV with header id, document_type, domain, educational_score, note."""
    if not path.is_file():
        raise ConfigError(f"no gold set at {path}")
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.DictReader((line for line in f if not line.startswith("#")), delimiter="\t"), start=2):
            try:
                labels = validate_labels(
                    {h.name: (int(row[h.name]) if h.kind == "regression" else row[h.name].strip()) for h in HEADS}
                )
            except Exception as e:
                raise ConfigError(f"{path}:{n}: invalid gold row {row!r}: {e}") from None
            rows.append({"id": row["id"].strip(), **labels})
    return rows


def gold_items(gold: list[dict[str, Any]], data_dir: Path) -> list[dict[str, Any]]:
    """Texts of the gold paragraphs, parsed from the real articles (the text is never copied into the repo)."""
    from pipeline.jats import parse_articles

    if not data_dir.is_dir():
        raise ConfigError(f"gold texts come from {data_dir}, which does not exist (pass --gold-data)")
    wanted = {g["id"] for g in gold}
    pmcids = {i.split("/", 1)[0] for i in wanted}
    files = sorted(p for p in data_dir.iterdir() if p.suffix in (".xml", ".nxml"))
    files.sort(key=lambda p: p.stem not in pmcids)  # likely files first
    found: dict[str, dict[str, Any]] = {}
    for path in files:
        if len(found) == len(wanted):
            break
        for parsed in parse_articles(path.read_bytes(), path.name, min_tokens=0):
            if isinstance(parsed, Reject) or parsed.article.pmcid not in pmcids:
                continue
            for p in parsed.paragraphs:
                if p.id in wanted:
                    found[p.id] = {"id": p.id, "article_id": p.article_id, "title": parsed.article.title,
                                   "section_title": p.section_title, "text": p.text}  # fmt: skip
    missing = sorted(wanted - set(found))
    if missing:
        raise ConfigError(f"{len(missing)} gold ids not found in {data_dir}: {missing[:5]}")
    return [found[g["id"]] for g in gold]


def labels_by_id(folder: Location) -> dict[str, dict[str, Any]]:
    rows = tables.rows("SELECT id, document_type, domain, educational_score FROM read_parquet($files)",
                       folder.glob("*.parquet"))
    return {r[0]: {"id": r[0], "document_type": r[1], "domain": r[2], "educational_score": r[3]} for r in rows}


def agreement_between(reference: dict[str, dict[str, Any]], other: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Agreement on the ids both labelled (ids only one side has are counted, not scored)."""
    ids = sorted(set(reference) & set(other))
    report = agreement.agreement_report([reference[i] for i in ids], [other[i] for i in ids])
    report["only_reference"] = len(set(reference) - set(other))
    report["only_other"] = len(set(other) - set(reference))
    return report


def write_report(workdir: Workdir, name: str, report: dict[str, Any]) -> Location:
    path = workdir.reports / name
    path.write_text(json.dumps(report, indent=2, default=float))
    return path



def slug(name: str) -> str:
    """A model name made safe for a directory name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"
