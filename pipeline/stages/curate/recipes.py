"""Recipe files: loading one (built-in or a path), its declared parameters, and the bindings DuckDB gets.

A recipe is one SELECT. Parameters are declared in the file's header (`-- param: name = default  # help`)
and bound with DuckDB's parameter binding (`$name`), never pasted into the SQL text. Label values are
bound too (`$type_clinical_case`, `$domain_clinical`, ...), derived from pipeline.labels, so a recipe
cannot drift from the label schema.
"""

from __future__ import annotations

import ast
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core import labels as label_schema
from pipeline.core.errors import ConfigError

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"  # pipeline/recipes/*.sql


@dataclass(frozen=True)
class Param:
    """A recipe parameter declared in the header: `-- param: name = default  # help`."""

    name: str
    default: Any  # None when required
    help: str = ""

    @property
    def required(self) -> bool:
        return self.default is None

    def convert(self, raw: str) -> Any:
        """A --param value (always a string on the command line) as the default's type."""
        kind = type(self.default) if self.default is not None else None
        try:
            if kind is bool:
                low = raw.strip().lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(raw)
                return low in ("true", "1", "yes")
            if kind is int:
                return int(raw)
            if kind is float:
                return float(raw)
            if kind is str:
                return raw
            return _literal(raw)
        except ValueError as e:
            raise ConfigError(
                f"parameter {self.name}={raw!r}: expected {kind.__name__ if kind else 'a value'}"
            ) from e


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe file."""

    name: str
    path: Path
    text: str  # the whole file, as recorded in the manifest
    sql: str  # the statement, comments kept, trailing semicolon removed
    description: str
    params: dict[str, Param] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


_PARAM_RE = re.compile(r"^--\s*param:\s*(?P<name>[A-Za-z_]\w*)\s*(?:=\s*(?P<rest>.*)|(?P<help>#.*))?$")
_VALUE_RE = re.compile(r"""^(?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s#]+)?\s*(?:#\s*(?P<help>.*))?$""")


def _literal(raw: str) -> Any:
    """A header default or untyped value: int, float, bool, quoted string, else the bare word."""
    raw = raw.strip()
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw
    if isinstance(value, bool | int | float | str):
        return value
    raise ValueError(f"unsupported parameter value {raw!r} (int, float, bool or quoted string)")


def builtin_recipes() -> list[str]:
    """Names of the packaged recipes."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.sql"))


def parse_recipe(text: str, name: str, path: Path) -> Recipe:
    """Split a recipe file into description, declared parameters and the SQL statement."""
    description: list[str] = []
    params: dict[str, Param] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            break  # the header ends at the first SQL line
        m = _PARAM_RE.match(stripped)
        if m:
            pname, rest = m["name"], (m["rest"] or m["help"] or "").strip()
            v = _VALUE_RE.match(rest)
            if v is None:
                raise ConfigError(f"recipe {name}: cannot read parameter line {stripped!r}")
            try:
                default = _literal(v["value"]) if v["value"] else None
            except ValueError as e:
                raise ConfigError(f"recipe {name}: {e}") from e
            if pname in params:
                raise ConfigError(f"recipe {name}: parameter {pname} declared twice")
            if pname in label_bindings():
                raise ConfigError(f"recipe {name}: parameter {pname} shadows a label binding")
            params[pname] = Param(pname, default, (v["help"] or "").strip())
        else:
            description.append(stripped.lstrip("-").strip())
    sql = text.strip()
    while sql.endswith(";"):
        sql = sql[:-1].rstrip()
    if not _strip_comments_and_strings(sql).strip():
        raise ConfigError(f"recipe {name} ({path}) holds no SQL statement")
    return Recipe(name, path, text, sql, " ".join(d for d in description if d), params)


def load_recipe(spec: str) -> Recipe:
    """A built-in recipe by name, or a user's recipe by path to a .sql file."""
    path = Path(spec)
    if spec.endswith(".sql") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"recipe file {spec} does not exist")
        return parse_recipe(path.read_text(encoding="utf-8"), path.stem, path.resolve())
    builtin = RECIPES_DIR / f"{spec}.sql"
    if not builtin.is_file():
        raise ConfigError(
            f"unknown recipe {spec!r}: built-in recipes are {', '.join(builtin_recipes())}, or give a path to a .sql file"
        )
    return parse_recipe(builtin.read_text(encoding="utf-8"), spec, builtin)


def label_bindings() -> dict[str, Any]:
    """Label values every recipe may use, named after pipeline.core.labels (never typed into SQL)."""
    return label_schema.sql_bindings()


def _strip_comments_and_strings(sql: str) -> str:
    """SQL with -- comments, /* */ comments and quoted literals/identifiers blanked out."""
    return re.sub(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"", " ", sql, flags=re.S)


def referenced_params(sql: str) -> list[str]:
    """Names of the `$name` placeholders a statement uses, in order of first use."""
    seen: dict[str, None] = {}
    for m in re.finditer(r"\$([A-Za-z_]\w*)", _strip_comments_and_strings(sql)):
        seen.setdefault(m.group(1), None)
    return list(seen)


def resolve_params(recipe: Recipe, overrides: list[str] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the recipe's parameters with overrides applied, the bindings DuckDB gets).

    Raises ConfigError for an unknown or malformed --param, a missing required parameter, or a
    placeholder in the SQL that is neither declared nor a label binding.
    """
    values = {name: p.default for name, p in recipe.params.items()}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--param {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if key not in recipe.params:
            known = ", ".join(recipe.params) or "none"
            raise ConfigError(f"unknown parameter {key!r} for recipe {recipe.name} (its parameters: {known})")
        values[key] = recipe.params[key].convert(raw)
    missing = [k for k, v in values.items() if v is None]
    if missing:
        raise ConfigError(f"recipe {recipe.name} needs --param {', '.join(f'{m}=...' for m in missing)}")
    labels = label_bindings()
    bindings: dict[str, Any] = {}
    for name in referenced_params(recipe.sql):
        if name in values:
            bindings[name] = values[name]
        elif name in labels:
            bindings[name] = labels[name]
        else:
            raise ConfigError(
                f"recipe {recipe.name} uses ${name}, which is neither a declared parameter "
                f"(`-- param: {name} = ...`) nor a label binding ({', '.join(labels)})"
            )
    return values, bindings
