"""Secret values (storage credentials, API keys) that must never reach a marker, manifest, report or log.

`pipeline.storage` registers the secrets it is given (Beam's `--s3_*` credential flags, the standard
`AWS_*` and `OPENAI_API_KEY` environment); everything we write that could hold a command line or an
error message goes through `redact`, and `install_log_filter` redacts every log record.

Credentials inside URLs are secrets too, registered or not: the password of `scheme://user:PASSWORD@host`
and the values of query parameters that carry credentials (`?api_key=`, `token=`, `X-Amz-Signature=`,
...) are masked by `redact` wherever a URL appears (`--base-url http://u:p@host/v1` in a log line, a step
marker, an error message). `register_urls` also registers them as values, so the bare password is masked
where it appears without its URL.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

MASK = "***"
# Flags whose value is a secret whatever it is (also when not registered: a marker written by a
# process that never saw the value still hides it).
SECRET_FLAG_NAMES = ("s3_access_key_id", "s3_secret_access_key", "s3_session_token", "api_key", "api-key")

# scheme://user:password@ -> scheme://user:***@ (the password ends at the last @ before the host)
_URL_PASSWORD = re.compile(r"(?P<pre>\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@?#]*:)(?P<secret>[^\s/?#]*)(?=@)")
# ?token=... / &api_key=... / X-Amz-Signature=... (names compared case-insensitively)
_SECRET_PARAMS = ("api_key", "api-key", "apikey", "key", "token", "access_token", "auth", "password", "passwd",
                  "secret", "sig", "signature", "x-amz-signature", "x-amz-security-token", "x-amz-credential",
                  "x-goog-signature", "x-goog-credential", "client_secret")  # fmt: skip
_URL_PARAM = re.compile(r"(?P<pre>[?&](?:" + "|".join(re.escape(p) for p in _SECRET_PARAMS) + r")=)(?P<secret>[^&\s#\"']+)",
                        re.IGNORECASE)  # fmt: skip

_values: set[str] = set()
_lock = threading.Lock()


def register(value: str) -> None:
    """Remember a secret value so `redact` hides it (values shorter than 4 characters are ignored)."""
    if value and len(value) >= 4:
        with _lock:
            _values.add(value)


def redact(text: str) -> str:
    """The text with every registered secret, and every credential inside a URL, replaced by ***."""
    with _lock:
        values = sorted(_values, key=len, reverse=True)
    for v in values:
        if v in text:
            text = text.replace(v, MASK)
    if "://" in text or "=" in text:
        text = _URL_PASSWORD.sub(lambda m: m["pre"] + MASK, text)
        text = _URL_PARAM.sub(lambda m: m["pre"] + MASK, text)
    return text


def register_urls(obj: Any) -> None:
    """Register the credentials of every URL found in `obj` (a string, or lists/dicts of them)."""
    if isinstance(obj, dict):
        for v in obj.values():
            register_urls(v)
    elif isinstance(obj, list | tuple | set):
        for v in obj:
            register_urls(v)
    elif isinstance(obj, str) and "://" in obj:
        for m in re.finditer(r"[A-Za-z][A-Za-z0-9+.-]*://\S+", obj):
            try:
                url = urlsplit(m.group(0))
                if url.password:
                    register(url.password)
                for name, value in parse_qsl(url.query):
                    if name.lower() in _SECRET_PARAMS:
                        register(value)
            except ValueError:
                continue


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
