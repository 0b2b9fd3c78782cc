"""One record type per arrow of the data flow, defined once; Parquet schemas derive from them.

Column names match the released Biomed-Enriched dataset where they overlap (id, article_id,
path, text, language, section_title, domain, document_type, educational_score, domain_scores,
document_type_scores, language_score, authors, article_url, license_url).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa


@dataclass
class Article:
    """One row of W/articles: an article's metadata (its paragraphs are in W/paragraphs)."""

    pmcid: str  # always "PMC" + digits
    pmid: str | None
    doi: str | None
    title: str | None
    journal: str | None
    year: int | None
    article_type: str | None
    license: str  # normalised short name: "CC BY", "CC BY-NC", ..., "other", "none"
    license_url: str | None
    commercial: bool  # may the text be used commercially (see docs/licenses.md)
    language: str | None  # article's declared xml:lang, else the majority of its paragraphs
    n_paragraphs: int  # paragraphs written to W/paragraphs
    source: str  # input file (and archive member) it came from
    authors: list[str] = field(default_factory=list)
    article_url: str | None = None
    n_short_paragraphs: int = 0  # body paragraphs dropped for being under --min-tokens
    n_sub_articles: int = 0  # sub-articles (translations, abstracts) seen and not counted as body text
    dtd_version: str | None = None
    # From the PMC Cloud layout (s3://pmc-oa-opendata): None for legacy inputs unless a .filelist.csv says.
    pmcid_version: str | None = None  # "PMC123.2": the version parsed
    version: int | None = None
    is_manuscript: bool | None = None  # an author manuscript (NIHMS), not the publisher's version
    is_retracted: bool | None = None  # the metadata (JSON or file list) says the article is retracted
    license_code: str | None = None  # the license as the JSON / file list gives it ("CC BY-NC", "TDM", ...)
    source_md5: str | None = None  # MD5 of the XML, from the JSON's xml_url (checked on read)
    snapshot: str | None = None  # the inventory's date, or the time the layout was listed


@dataclass
class SourceVersion:
    """One row of W/versions: what the parse did with one article version named by the PMC Cloud index.

    The inventory state a later run diffs against (key -> etag), and the counts of the run's summary.
    """

    key: str  # "PMC123.2"
    pmcid: str
    version: int
    etag: str | None
    last_modified: str | None
    snapshot: str | None
    outcome: str  # parsed, superseded, not_open_access, retracted, manuscript, license_filtered, rejected
    license_code: str | None = None
    license_xml: str | None = None  # what the XML alone says (parsed versions)
    license_agrees: bool | None = None  # JSON license_code and XML agree (None: one of them is missing)
    detail: str | None = None


@dataclass
class Tombstone:
    """One row of W/tombstones: an article an `--update` took out of W/articles, and why."""

    pmcid: str
    key: str | None  # its newest version, when it still has one
    reason: str  # removed (no version left), retracted, not_open_access, manuscript, license_filtered, rejected
    snapshot: str  # the inventory the update read


@dataclass
class Paragraph:
    """One row of W/paragraphs: a body paragraph, addressed by its path inside <body>."""

    id: str  # f"{article_id}/{path}", stable across runs
    article_id: str  # the pmcid
    path: str  # e.g. "sec[0]/sec[2]/p[1]"
    section_title: str | None  # chain of section titles, " > " separated
    text: str
    n_tokens: int
    language: str | None
    language_score: float | None = None
    pmid: str | None = None  # the article's PMID (Article.pmid): with path, Biomed-Enriched's key
    # The published biomed-enriched tool, given this file, finds this very element at `path`
    # (docs/parse.md); None only in rows written before the column existed.
    be_addressable: bool | None = None


@dataclass
class Reject:
    """One row of W/rejects: an input or record that did not make it, and why."""

    source: str  # file / archive member / paragraph id the reject is about
    stage: str  # "parse", "annotate", "propagate", ...
    reason: str  # a pipeline.errors.RejectReason value
    detail: str  # human-readable explanation
    record_id: str | None = None  # paragraph id when the reject is about one paragraph
    raw: str | None = None  # raw payload worth keeping (e.g. the LLM's invalid reply), truncated


@dataclass
class SampledParagraph:
    """One row of W/sample: a paragraph picked for the teacher, with the context its prompt needs."""

    id: str
    article_id: str
    path: str
    title: str | None  # article title, shown to the teacher
    article_type: str | None
    language: str | None
    section_title: str | None
    text: str
    n_tokens: int
    stratum: str  # which cheap-signal stratum it was drawn from (see docs/annotate.md)
    sample_key: str  # hex hash of (seed, id): the order of selection, independent of files and runner
    seed: int
    strategy: str  # "stratified", "uniform", "uncertainty"


@dataclass
class Annotation:
    """One row of W/annotations: the teacher LLM's labels for one sampled paragraph."""

    id: str
    article_id: str
    document_type: str
    domain: str
    educational_score: int
    teacher_model: str
    prompt_version: str
    prompt_hash: str
    input_hash: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    attempts: int


@dataclass
class Label:
    """One row of W/labels: the student classifier's prediction for one paragraph."""

    id: str
    article_id: str
    document_type: str
    domain: str
    educational_score: float
    document_type_scores: list[float]
    domain_scores: list[float]
    model_id: str
    truncated: bool
    input_hash: str | None = None


@dataclass
class Duplicate:
    """One row of W/duplicates: a paragraph that has a copy, is boilerplate, or is in an article published twice.

    Groups are named by their smallest member id; `*_rank` is the member's place in the keep order
    (pipeline.dedup.keep): 0 is the kept copy. Paragraphs in none of these are not in the table.
    """

    id: str
    article_id: str
    exact_group: str | None  # smallest id of the paragraphs with the same normalised text
    exact_rank: int | None
    near_group: str | None  # smallest id of the MinHash connected component
    near_rank: int | None
    group_size: int  # members of the near group (the exact group where there is no near group)
    group_articles: int  # distinct articles of that group
    boilerplate: bool  # the group spans many articles, or most of the paragraph is template sentences
    boilerplate_share: float  # share of the paragraph's words in sentences common across articles
    article_group: str | None  # smallest pmcid of the articles with the same normalised body
    article_rank: int | None


@dataclass
class Contamination:
    """One row of W/contamination: a paragraph overlaps a benchmark item, by one rule."""

    id: str
    article_id: str
    benchmark: str
    item_id: str
    rule: str  # ngram (13-gram of question + answer), question (whole short question), pmid (PubMedQA's article)
    n_ngrams: int  # distinct matching n-grams (1 for question and pmid)


_SCALARS: dict[Any, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
}


def _arrow_type(tp: Any) -> tuple[pa.DataType, bool]:
    """Map a type hint to (arrow type, nullable)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported union {tp}")
        return _arrow_type(args[0])[0], True
    if origin is list:
        (inner,) = typing.get_args(tp)
        return pa.list_(_arrow_type(inner)[0]), False
    if tp in _SCALARS:
        return _SCALARS[tp], False
    raise TypeError(f"unsupported field type {tp}")


def arrow_schema(cls: type, metadata: dict[str, str] | None = None) -> pa.Schema:
    """The Parquet/Arrow schema of a record dataclass, in field order."""
    hints = typing.get_type_hints(cls)
    fields = []
    for f in dataclasses.fields(cls):
        dtype, nullable = _arrow_type(hints[f.name])
        fields.append(pa.field(f.name, dtype, nullable=nullable))
    return pa.schema(fields, metadata={k.encode(): v.encode() for k, v in (metadata or {}).items()})


def column_names(cls: type) -> list[str]:
    """Field names of a record dataclass, in order."""
    return [f.name for f in dataclasses.fields(cls)]


def as_row(record: Any) -> dict[str, Any]:
    """A record as the plain dict Beam's WriteToParquet and pyarrow expect (shallow, fast)."""
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
