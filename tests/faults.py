"""Fault injection: a kill at a chosen storage operation.

`kill_at(monkeypatch, "unlink", when=...)` wraps `storage.Location.<operation>` (write_bytes, write_from,
unlink, rmtree, upload_from, ...) so that the n-th call matching `when` raises Killed instead of doing
its work: what a `kill -9` at that point leaves behind, for both local and s3:// / gs:// locations
(the wrapper sits above the filesystem). Killed is a BaseException, like the signal it stands for: no
`except Exception` in the code under test catches it, and no cleanup that a real kill would skip runs
in its place unless the code has a `finally`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from pipeline.core.storage import Location


class Killed(BaseException):
    """The process died here (injected)."""


@dataclass
class Fault:
    operation: str
    calls: list[str] = field(default_factory=list)  # every matching call, the fatal one last
    fired: bool = False


def kill_at(monkeypatch: pytest.MonkeyPatch, operation: str, when: Callable[[Location], bool] = lambda loc: True,
            nth: int = 1) -> Fault:
    """Raise Killed at the `nth` call of Location.<operation> on a location for which `when` is true."""
    real = getattr(Location, operation)
    fault = Fault(operation)

    def wrapped(self: Location, *args: Any, **kwargs: Any) -> Any:
        if not fault.fired and when(self):
            fault.calls.append(str(self))
            if len(fault.calls) == nth:
                fault.fired = True
                raise Killed(f"killed at {operation}({self})")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Location, operation, wrapped)
    return fault
