"""A transparent keyword-rule "teacher" over real paragraphs, for tests and offline experiments.

It is NOT a substitute for the LLM teacher: it exists so that the student's learning, the
uncertainty-sampling experiment and the propagation tests run offline on real PMC text with labels
that carry a real, known signal. Every rule reads only the paragraph text (what the student sees),
so a student that learns them is learning from text, not from leaked metadata.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pyarrow as pa

from pipeline.core import labels as L
from pipeline.core import provenance, storage
from pipeline.core.errors import ConfigError
from pipeline.core.records import Annotation, Paragraph, arrow_schema, as_row
from pipeline.core.workdir import Workdir

RULE_TEACHER = provenance.RULE_TEACHER  # artifacts name labels it made as heuristic

_CASE = re.compile(r"\b(\d+[- ]year[- ]old|presented (with|to)|was admitted|on examination|case report|our patient)\b", re.I)
_REVIEW = re.compile(r"\b(review(ed|s)?|literature|previous(ly)? (studies|reported|described)|meta-analys[ie]s)\b", re.I)
_STUDY = re.compile(r"\b(we (found|observed|measured|performed|used|analy[sz]ed)|significant(ly)?|p\s*[<=>]\s*0?\.\d|n\s*=\s*\d+|\d+(\.\d+)?\s*%)", re.I)
_CLINICAL = re.compile(r"\b(patients?|clinical|hospital|treatment|therapy|diagnos\w+|surgery|symptoms?|disease)\b", re.I)
_CITATION = re.compile(r"(\[\d+(?:[,\u2013-]\s*\d+)*\]|\bet al\.)")
_BIOMED = re.compile(r"\b(cells?|proteins?|genes?|mice|mouse|expression|molecular|dna|rna|enzymes?|bacteria\w*|receptors?|mutations?)\b", re.I)


def rule_labels(text: str, window_words: int | None = None) -> tuple[str, str, int]:
    """(document_type, domain, educational_score) of one paragraph by keyword rules.

    `window_words` limits the rules to the first N words, so that a student truncated at a short
    max length still sees everything the labels depend on.

    Type: case wording -> "Clinical case", else review wording -> "Review", else study wording
    (results, statistics) -> "Study", else "Other". Domain: more clinical than biomedical keyword hits
    -> "clinical", any biomedical hit -> "biomedical", else "other". Score 1-5: one point each for
    a domain keyword, three or more domain keywords, a study statistic, a citation ("[12]", "et al.").
    """
    if window_words:
        text = " ".join(text.split()[:window_words])
    if _CASE.search(text):
        dtype = L.CLINICAL_CASE
    elif _REVIEW.search(text):
        dtype = L.REVIEW
    elif _STUDY.search(text):
        dtype = L.STUDY
    else:
        dtype = L.OTHER_TYPE
    n_clin, n_bio = len(_CLINICAL.findall(text)), len(_BIOMED.findall(text))
    if n_clin and n_clin >= n_bio:
        domain = L.CLINICAL
    elif n_bio:
        domain = L.BIOMEDICAL
    else:
        domain = L.OTHER_DOMAIN
    score = 1 + int(bool(n_clin or n_bio)) + int(n_clin + n_bio >= 3) + int(bool(_STUDY.search(text))) + int(
        bool(_CITATION.search(text))
    )
    return dtype, domain, score


def length_rule_labels(text: str, window_words: int | None = None) -> tuple[str, str, int]:
    """rules-length-v1: the type and domain of rule_labels; a score that depends on the paragraph's length
    as much as on its content: 1 + one point each for a domain keyword, a citation, more than 120 words and
    more than 250 words (clipped to 5). Past a short max length the student cannot count the words it does
    not see: this is the teacher that truncation hurts."""
    dtype, domain, _ = rule_labels(text, window_words)
    words = text.split()
    content = " ".join(words[:window_words]) if window_words else text
    score = 1 + int(bool(_CLINICAL.search(content) or _BIOMED.search(content))) + int(bool(_CITATION.search(content))) \
        + int(len(words) > 120) + int(len(words) > 250)
    return dtype, domain, min(score, L.SCORE_MAX)


def content_rule_labels(text: str, window_words: int | None = None) -> tuple[str, str, int]:
    """rules-content-v1: the type and domain of rule_labels; a score from keyword density only (domain
    keywords per 100 words: < 1, 1-3, 3-6, 6-10, >= 10 -> 1..5), independent of length."""
    dtype, domain, _ = rule_labels(text, window_words)
    words = text.split()[:window_words] if window_words else text.split()
    content = " ".join(words)
    density = 100 * (len(_CLINICAL.findall(content)) + len(_BIOMED.findall(content))) / max(len(words), 1)
    score = 1 + sum(density >= t for t in (1, 3, 6, 10))
    return dtype, domain, score


# name -> the rules; each labels paragraphs from their text only (docs/classifier.md, "Rule teachers")
TEACHERS: dict[str, Callable[[str, int | None], tuple[str, str, int]]] = {
    "rules-v1": rule_labels,
    "rules-length-v1": length_rule_labels,
    "rules-content-v1": content_rule_labels,
}


def teacher_rules(name: str) -> Callable[[str, int | None], tuple[str, str, int]]:
    """The rules of a named rule teacher; ConfigError naming the known ones."""
    if name not in TEACHERS:
        raise ConfigError(f"unknown rule teacher {name!r}; known: {', '.join(TEACHERS)}")
    return TEACHERS[name]


def annotations_for(paragraphs: Iterable[Paragraph], window_words: int | None = None,
                    teacher: str = "rules-v1") -> list[Annotation]:
    """Rule-teacher annotations for paragraphs (one per paragraph), as the annotate stage would write them."""
    rules = teacher_rules(teacher)
    out = []
    for p in paragraphs:
        t, d, s = rules(p.text, window_words)
        out.append(Annotation(id=p.id, article_id=p.article_id, document_type=t, domain=d, educational_score=s,
                              teacher_model=RULE_TEACHER, prompt_version=teacher, prompt_hash="", input_hash="",
                              prompt_tokens=0, completion_tokens=0, latency_s=0.0, attempts=1))
    return out


def write_table(rows: Sequence[object], cls: type, path: str | Path | storage.Location) -> None:
    """Write record dataclasses to one Parquet file (local or on an object store) with the schema
    derived from their class."""
    table = pa.Table.from_pylist([as_row(r) for r in rows], schema=arrow_schema(cls))
    storage.write_parquet(table, storage.as_location(path))


def write_workdir(
    workdir: Workdir, paragraphs: Sequence[Paragraph], annotated: Sequence[Paragraph], window_words: int | None = None,
    teacher: str = "rules-v1",
) -> None:
    """W/paragraphs = `paragraphs`; W/annotations = labels of `annotated` by the rule teacher `teacher`."""
    write_table(list(paragraphs), Paragraph, workdir.paragraphs / "part-00000.parquet")
    write_table(annotations_for(annotated, window_words, teacher), Annotation,
                workdir.annotations / "part-00000.parquet")


def sample_paragraphs(sample_dir: Path, max_articles: int | None = None) -> list[Paragraph]:
    """Real paragraphs of the PMC-OA sample, parsed with the project's parser (pipeline.jats)."""
    from pipeline.jats import parse_article  # the parse stage's pure function

    files = sorted(Path(sample_dir).glob("*.xml"))[: max_articles or None]
    out: list[Paragraph] = []
    for f in files:
        try:
            result = parse_article(f.read_bytes(), str(f))
        except Exception:  # a reject for the parse stage; the rule teacher just skips it
            continue
        paragraphs = result[1] if isinstance(result, tuple) else result.paragraphs
        out.extend(paragraphs)
    return out
