"""Secret values (storage credentials, API keys) that must never reach a marker, manifest, report or log.

`pipeline.storage` registers the secrets it is given (Beam's `--s3_*` credential flags, the standard
`AWS_*` and `OPENAI_API_KEY` environment); everything we write that could hold a command line or an
error message goes through `redact`, and `install_log_filter` redacts every log record.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

MASK = "***"
# Flags whose value is a secret whatever it is (also when not registered: a marker written by a
# process that never saw the value still hides it).
SECRET_FLAG_NAMES = ("s3_access_key_id", "s3_secret_access_key", "s3_session_token", "api_key", "api-key")

_values: set[str] = set()
_lock = threading.Lock()


def register(value: str) -> None:
    """Remember a secret value so `redact` hides it (values shorter than 4 characters are ignored)."""
    if value and len(value) >= 4:
        with _lock:
            _values.add(value)


def redact(text: str) -> str:
    """The text with every registered secret replaced by ***."""
    with _lock:
        values = sorted(_values, key=len, reverse=True)
    for v in values:
        if v in text:
            text = text.replace(v, MASK)
    return text


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line with the values of secret flags (and any registered secret) masked."""
    out: list[str] = []
    hide_next = False
    for a in argv:
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        name, eq, _value = a.lstrip("-").partition("=")
        if a.startswith("--") and name in SECRET_FLAG_NAMES:
            if eq:
                out.append(f"--{name}={MASK}")
            else:
                out.append(a)
                hide_next = True
            continue
        out.append(redact(a))
    return out


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with the registered secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        with _lock:
            empty = not _values
        if empty:
            return True
        try:
            msg = record.getMessage()
        except Exception:  # a record whose arguments do not format: leave it to logging
            return True
        clean = redact(msg)
        if clean != msg or record.args:
            record.msg, record.args = clean, None
        return True


def install_log_filter() -> None:
    """Redact every record that reaches the root logger's handlers (ours and Beam's)."""
    f = RedactingFilter()
    for h in logging.getLogger().handlers:
        if not any(isinstance(x, RedactingFilter) for x in h.filters):
            h.addFilter(f)
