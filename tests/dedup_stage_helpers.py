"""A small work directory for the dedup and decontaminate stage tests (hand-written text, see dedup_fixtures)."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.labels import BIOMEDICAL, OTHER_TYPE
from pipeline.core.records import Article, Label, Paragraph, arrow_schema, as_row
from pipeline.core.workdir import Workdir
from tests.dedup_fixtures import BASE, EDITS, distinct_sentence, template_paragraph

# A paragraph ending in a PubMedQA-style planted passage (see test_decontaminate_stage.py).
PLANTED = ("Of the patients who received the new regimen, the proportion with sustained remission at two years "
           "was markedly higher than among those who continued standard care, and relapse was rare.")  # fmt: skip


def _article(pmcid: str, version: int | None = 1, pmid: str | None = None) -> Article:
    return Article(pmcid=pmcid, pmid=pmid, doi=None, title=f"Title of {pmcid}", journal="J", year=2020,
                   article_type="research-article", license="CC BY", license_url=None, commercial=True,
                   language="en", n_paragraphs=0, source="test", version=version)  # fmt: skip


def corpus() -> tuple[list[Article], list[Paragraph]]:
    """Articles and paragraphs:

    - PMC100 holds the three base paragraphs; PMC101 / PMC102 hold edited copies of them (number, typo,
      reordered sentence), PMC102 as version 2 (newer: its copies are kept);
    - PMC200 .. PMC211: one paragraph each sharing the long template sentence, plus a distinct sentence;
    - PMC300 and PMC301: the same article (two paragraphs) under two PMCIDs, PMC301 longer by nothing:
      equal bodies, PMC300 kept (same version, same length, smaller id);
    - PMC400: PLANTED inside a longer paragraph, and PMID 4000 (PubMedQA matches it by PMID too).
    """
    arts = [_article("PMC100"), _article("PMC101"), _article("PMC102", version=2), _article("PMC300"),
            _article("PMC301"), _article("PMC400", pmid="4000")]  # fmt: skip
    paras: list[Paragraph] = []

    def add(pmcid: str, j: int, text: str) -> None:
        path = f"sec[0]/p[{j}]"
        paras.append(Paragraph(id=f"{pmcid}/{path}", article_id=pmcid, path=path, section_title="Methods",
                               text=text, n_tokens=len(text.split()), language="en"))  # fmt: skip

    for j, key in enumerate(("bp", "tb", "mri")):
        add("PMC100", j, BASE[key])
    add("PMC101", 0, EDITS["bp.number"])
    add("PMC101", 1, EDITS["tb.reordered"])
    add("PMC102", 0, EDITS["bp.typo"])
    add("PMC102", 1, EDITS["mri.number"])
    add("PMC102", 2, BASE["tb"])  # an exact copy of PMC100's
    for i in range(12):
        arts.append(_article(f"PMC{200 + i}"))
        add(f"PMC{200 + i}", 0, template_paragraph(i))
    for pmcid in ("PMC300", "PMC301"):
        add(pmcid, 0, distinct_sentence(300) + " " + distinct_sentence(301))
        add(pmcid, 1, distinct_sentence(302) + " " + distinct_sentence(303))
    add("PMC400", 0, distinct_sentence(400) + " " + PLANTED + " " + distinct_sentence(401))
    add("PMC400", 1, distinct_sentence(402))
    return arts, paras


def write_workdir(root: Path, shards: int = 1, seed: int = 0, labels: dict[str, float] | None = None) -> Workdir:
    """The corpus in `shards` files per table, paragraphs shuffled by `seed`; labels (id -> score) when given."""
    arts, paras = corpus()
    random.Random(seed).shuffle(paras)
    wd = Workdir.of(root)
    tables: list[tuple[str, list, type]] = [("articles", arts, Article), ("paragraphs", paras, Paragraph)]
    if labels is not None:
        rows = [Label(id=p.id, article_id=p.article_id, document_type=OTHER_TYPE, domain=BIOMEDICAL,
                      educational_score=labels.get(p.id, 3.0), document_type_scores=[0.0, 0.0, 0.0, 1.0],
                      domain_scores=[0.0, 1.0, 0.0], model_id="test", truncated=False) for p in paras]  # fmt: skip
        tables.append(("labels", rows, Label))
    for name, rows, cls in tables:
        d = wd.reset_table(name)
        per = -(-len(rows) // shards)
        for s in range(shards):
            chunk = rows[s * per : (s + 1) * per]
            pq.write_table(pa.Table.from_pylist([as_row(r) for r in chunk], schema=arrow_schema(cls)), d / f"part-{s}.parquet")
    return wd
