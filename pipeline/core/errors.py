"""Errors named by what the caller should do, and the fixed vocabulary of reject reasons.

- ConfigError: stop at start-up, nothing has run (bad flag, missing input table, unknown recipe).
- RecordError: this one record is rejected with a reason; the run continues.
- LockLostError: another run took this run's lock on the work directory over; stop before the next write.
"""

from __future__ import annotations

from enum import StrEnum


class RejectReason(StrEnum):
    """Every reject in every stage carries one of these. Add new members here, never ad-hoc strings."""

    # parse
    EMPTY_FILE = "empty_file"
    TOO_LARGE = "too_large"
    BAD_ENCODING = "bad_encoding"
    MALFORMED_XML = "malformed_xml"
    NOT_AN_ARTICLE = "not_an_article"
    NO_PMCID = "no_pmcid"
    DUPLICATE_ARTICLE = "duplicate_article"
    CORRUPT_ARCHIVE = "corrupt_archive"
    UNREADABLE = "unreadable"
    UNSUPPORTED_FILE = "unsupported_file"  # a file in an input folder or glob that is not an article file
    PARSE_ERROR = "parse_error"  # unexpected exception in the parser (a bug): the file is kept as a reject
    # parse: the PMC Cloud layout (s3://pmc-oa-opendata and mirrors) and legacy file lists
    INVENTORY_PART_MISSING = "inventory_part_missing"  # a manifest names a csv.gz part that is not there
    CORRUPT_INVENTORY = "corrupt_inventory"  # a csv.gz part (or manifest) that cannot be read
    METADATA_MISSING = "metadata_missing"  # an indexed version without its JSON
    BAD_METADATA = "bad_metadata"  # a version's JSON is not JSON, or lacks pmcid/version
    NO_XML = "no_xml"  # a version prefix without its XML
    MD5_MISMATCH = "md5_mismatch"  # the XML's MD5 differs from the one in its JSON's xml_url
    NOT_OPEN_ACCESS = "not_open_access"  # no version of the article is open access
    RETRACTED = "retracted"  # the article's newest open-access version is retracted (--keep-retracted keeps it)
    RETRACTION_NOTICE = "retraction_notice"  # a retraction notice (article-type="retraction"), not an article
    # annotate (teacher)
    ENDPOINT_ERROR = "endpoint_error"
    REPLY_TRUNCATED = "reply_truncated"
    REPLY_EMPTY = "reply_empty"
    REPLY_NOT_JSON = "reply_not_json"
    REPLY_SCHEMA = "reply_schema"
    REFUSED = "refused"
    # annotate through a batch API (pipeline/teacher/batch.py); like endpoint_error, none is cached: a re-run retries
    BATCH_EXPIRED = "batch_expired"  # the batch's window ended before the request ran, resubmitted and again
    BATCH_FAILED = "batch_failed"  # the provider refused the whole batch (its errors are in the detail)
    BATCH_CANCELLED = "batch_cancelled"  # the batch was cancelled before the request ran
    BATCH_REQUEST_ERROR = "batch_request_error"  # the request's line in the error file (HTTP status, message)
    BATCH_NO_RESULT = "batch_no_result"  # a finished batch returned no line for the request, resubmitted and again
    # lines of a batch results file that belong to no sampled paragraph: counted and reported, never a row
    UNKNOWN_CUSTOM_ID = "unknown_custom_id"  # not a request of this sample, prompt and model
    DUPLICATE_RESULT = "duplicate_result"  # a second line for the same request
    MALFORMED_RESULT_LINE = "malformed_result_line"  # not JSON (a truncated file), or no custom_id
    # propagate (student)
    EMPTY_TEXT = "empty_text"
    INFERENCE_ERROR = "inference_error"
    # import-labels (published Biomed-Enriched rows that do not become labels)
    IMPORT_NO_KEY = "no_join_key"  # no PMID or no path
    IMPORT_DUPLICATE = "duplicate_row"  # several rows for one (PMID, path) or one id
    IMPORT_UNKNOWN_LABEL = "unknown_label_value"
    IMPORT_BAD_SCORE = "bad_score"  # educational_score missing or outside the schema's range
    IMPORT_BAD_VECTOR = "bad_score_vector"  # wrong length, missing entries, entries outside [0, 1]
    IMPORT_NO_ARTICLE = "no_article_with_pmid"
    IMPORT_AMBIGUOUS_PMID = "ambiguous_pmid"  # several of our articles carry the PMID
    IMPORT_NO_PARAGRAPH = "no_paragraph_at_path"
    IMPORT_NOT_ADDRESSABLE = "not_addressable"  # the published tool resolves the path to another element


class PmcCurateError(Exception):
    """Base class of the project's own errors."""


class ConfigError(PmcCurateError):
    """Configuration or environment is wrong: stop before doing any work, tell the user what to fix."""


class RecordError(PmcCurateError):
    """One record cannot be processed: reject it with `reason` and continue with the others."""

    def __init__(self, reason: RejectReason, detail: str = "", raw: str | None = None) -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail
        self.raw = raw


class DryRunFinished(PmcCurateError):
    """Not a failure: a Beam stage run with `--dry-run FILE` wrote its job to FILE and stops there (exit 0)."""

    def __init__(self, path: str, runner: str) -> None:
        super().__init__(f"dry run: wrote the {runner} job to {path}; nothing was submitted or written to the workdir")
        self.path = path


class LockLostError(BaseException):
    """Another run took over this run's lease on the work directory: stop writing there at once.

    A BaseException, like KeyboardInterrupt: it is raised asynchronously in the middle of a stage (the
    lock's heartbeat notices the takeover), and an `except Exception` that retries must not swallow it.
    """
