"""Data that ships inside the package: the versioned prompts and gold set (the repository's prompts/) and
the example flows with their embedded corpus (examples/), found through importlib.resources so that an
installed wheel finds them as a checkout does. pipeline/_bundled/ links to both folders; the wheel copies
them in (pyproject.toml, package-data)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

ROOT = Path(str(resources.files("pipeline") / "_bundled"))
PROMPTS = ROOT / "prompts"
EXAMPLES = ROOT / "examples"
