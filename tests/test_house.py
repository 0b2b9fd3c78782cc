"""The house rules: one stage registry, imports that run one way, the label schema defined once,
nothing stale, no module past ~400 lines."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import re
from pathlib import Path

import pytest

from pipeline import stages
from pipeline.core import labels as L
from pipeline.core import options, records
from pipeline.core.workdir import TABLES
from tests.house import REPO, cycles, import_graph, module_files, unit

# Which unit may import which (besides itself and the root package, which holds only the version). The order of the flow: core at the bottom; the pure
# libraries on it; the stages over the libraries; the flow over the stages; the command line on top.
ALLOWED: dict[str, set[str]] = {
    "pipeline": set(),
    "pipeline.core": set(),
    "pipeline.jats": {"pipeline.core"},
    "pipeline.sources": {"pipeline.core", "pipeline.jats"},
    "pipeline.teacher": {"pipeline.core", "pipeline.jats"},
    "pipeline.interop": {"pipeline.core"},
    "pipeline.shards": {"pipeline.core"},
    "pipeline.dedup": {"pipeline.core"},
    "classifiers": {"pipeline.core"},
    "beam_runners": {"pipeline.core"},
    "pipeline.stages": {"pipeline.core", "pipeline.jats", "pipeline.sources", "pipeline.teacher", "pipeline.interop",
                        "pipeline.shards", "pipeline.dedup", "classifiers", "beam_runners"},
    "pipeline.flow": {"pipeline.core", "pipeline.sources", "pipeline.stages", "beam_runners"},
    "pipeline.cli": {"pipeline.core", "pipeline.stages", "pipeline.flow", "pipeline.teacher", "beam_runners"},
}  # fmt: skip

MAX_LINES = 420  # "about 400": a module that needs more holds more than one job


# ------------------------------------------------------------------------------------------ registry


def test_every_stage_module_is_in_the_registry_and_the_other_way_round() -> None:
    root = REPO / "pipeline" / "stages"
    on_disk = {p.stem if p.suffix == ".py" else p.name for p in root.iterdir()
               if (p.suffix == ".py" and p.name != "__init__.py") or (p.is_dir() and (p / "__init__.py").is_file())}
    registered = {s.module.split(".")[2] for s in stages.STAGES}
    assert on_disk == registered, f"stage modules without an entry: {on_disk - registered}; " \
                                  f"entries without a module: {registered - on_disk}"
    assert len({s.module.split(".")[2] for s in stages.STAGES}) == len(stages.STAGES)  # one module per stage


@pytest.mark.parametrize("stage", stages.STAGES, ids=lambda s: s.name)
def test_each_stage_has_a_typed_config_and_a_run(stage: stages.Stage) -> None:
    module = stages.load(stage)
    assert dataclasses.is_dataclass(module.Config)
    assert list(inspect.signature(module.run).parameters)[:2] == ["config", "beam_argv"]
    fields = {f.name: o for f, o, _ in options.fields(module.Config)}
    assert "workdir" in fields and fields["workdir"].fixed  # the flow sets it once for every step
    for pattern in (*stage.reads, *stage.writes):  # every {field} of a glob is one of the config's
        for name in re.findall(r"\{(\w+)\}", pattern):
            assert hasattr(module.Config, name) or name in fields, (stage.name, pattern)


def test_the_workdir_layout_and_the_registry_agree() -> None:
    writers = stages.writers()
    for table in TABLES:
        assert table.name in writers, f"no stage writes the {table.name} table"
        if table.name != "rejects":  # every stage writes its own rejects, each under its own prefix
            assert len(writers[table.name]) == 1, (table.name, writers[table.name])
        assert dataclasses.is_dataclass(table.record)
    folders = {t.name for t in TABLES} | {"model", "subsets", "exports", "reports"}
    assert set(writers) <= folders, set(writers) - folders
    rejects = [p for s in stages.STAGES for p in s.writes if p.startswith("rejects/")]
    assert rejects == [f"rejects/{p.split('/')[1].split('-*')[0]}-*.parquet" for p in rejects]
    assert {p.split("/")[1].split("-*")[0] for p in rejects} <= set(stages.ORDER)


def test_cli_and_flow_build_the_same_config_from_flags_and_from_yaml_keys() -> None:
    from pipeline.cli import command_parser

    for stage in stages.STAGES:
        module = stages.load(stage)
        # a config with every option set away from its default where its type allows
        defaults = options.from_mapping(module.Config, _required(module.Config), "t", fixed={"workdir": "w"})
        argv = options.to_argv(defaults, with_fixed=True)
        parsed = options.from_namespace(module.Config, command_parser(stage.name, module.Config).parse_args(argv))
        assert parsed == defaults, stage.name


def _required(cls: type) -> dict[str, object]:
    """Values for the required options of a Config."""
    out: dict[str, object] = {}
    for f, opt, tp in options.fields(cls):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and not opt.fixed:
            out[f.name] = ["x"] if opt.positional else (opt.choices[0] if opt.choices else 1 if tp is int else "x")
    return out


# ------------------------------------------------------------------------------------------ imports


def test_no_import_cycle_between_modules() -> None:
    found = cycles(import_graph())
    assert not found, f"import cycles: {found}"


def test_imports_run_one_way_between_packages() -> None:
    graph = import_graph()
    wrong = sorted({(m, t) for m, targets in graph.items() for t in targets
                    if unit(t) not in (unit(m), "pipeline") and unit(t) not in ALLOWED.get(unit(m), set())})  # fmt: skip
    assert not wrong, "imports against the layers:\n" + "\n".join(f"  {m} -> {t}" for m, t in wrong)
    units = {unit(m): set() for m in graph}
    for m, targets in graph.items():
        units[unit(m)] |= {unit(t) for t in targets if unit(t) != unit(m)}
    assert not cycles(units)
    assert set(units) <= set(ALLOWED), f"units without a place in the layers: {set(units) - set(ALLOWED)}"


def test_classifiers_and_libraries_never_import_beam() -> None:
    for module, f in module_files().items():
        if unit(module) in ("classifiers", "pipeline.core", "pipeline.jats", "pipeline.sources", "pipeline.teacher",
                            "pipeline.interop", "pipeline.shards", "pipeline.dedup") and not module.startswith("pipeline.core.storage.beam_files"):
            tree = ast.parse(f.read_text(encoding="utf-8"))
            names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
            names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
            assert not any(n.split(".")[0] == "apache_beam" for n in names), module


# ------------------------------------------------------------------------------------- label schema

CLASS_NAMES = {*L.DOCUMENT_TYPES, *L.DOMAINS}
# Strings that are the same word in another vocabulary, with why.
ALLOWED_SPELLINGS = {
    ("pipeline.jats.license", "other"): "license vocabulary: publisher terms",
    ("pipeline.sources.pmc_cloud", "other"): "license vocabulary: --license groups",
    ("pipeline.stages.curate.card", "other"): "Hugging Face license id",
    ("pipeline.stages.curate.card", "clinical"): "Hugging Face dataset tag",
    ("pipeline.stages.curate.card", "biomedical"): "Hugging Face dataset tag",
}


def _string_constants(tree: ast.AST) -> list[str]:
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}  # fmt: skip
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docstrings]  # fmt: skip


def test_no_module_spells_a_label_class_itself() -> None:
    found = []
    for module, f in module_files().items():
        if module == "pipeline.core.labels":
            continue
        for value in _string_constants(ast.parse(f.read_text(encoding="utf-8"))):
            if value in CLASS_NAMES and (module, value) not in ALLOWED_SPELLINGS:
                found.append((module, value))
    for sql in sorted((REPO / "pipeline" / "recipes").glob("*.sql")):  # recipes bind $type_..., $domain_...
        text = re.sub(r"--[^\n]*", "", sql.read_text(encoding="utf-8"))
        found += [(sql.name, v) for v in re.findall(r"'((?:[^']|'')*)'", text) if v in CLASS_NAMES]
    assert not found, f"label classes spelled outside pipeline/core/labels.py: {sorted(set(found))}"


def test_everything_derived_from_the_label_schema_agrees_with_it() -> None:
    from classifiers.model import label_schema
    from pipeline.stages.curate.recipes import label_bindings
    from pipeline.teacher.prompt import load_prompt, reply_schema

    heads = [h.name for h in L.HEADS]
    ann = {f.name for f in dataclasses.fields(records.Annotation)}
    lab = {f.name for f in dataclasses.fields(records.Label)}
    assert set(heads) <= ann and set(heads) <= lab
    assert {h.scores_column for h in L.HEADS if h.scores_column} <= lab
    props = reply_schema()["properties"]
    assert list(props) == heads
    for h in L.HEADS:
        if h.kind == "classification":
            assert props[h.name]["enum"] == list(h.classes)
            assert [label_bindings()[L.binding_name(h.name, c)] for c in h.classes] == list(h.classes)
        else:
            assert (props[h.name]["minimum"], props[h.name]["maximum"]) == (h.minimum, h.maximum)
    schema = label_schema()  # what a saved student records about its heads
    assert [x["name"] for x in schema["heads"]] == heads
    assert [tuple(x.get("classes", ())) for x in schema["heads"]] == [h.classes for h in L.HEADS]
    system = load_prompt().system
    for c in CLASS_NAMES:
        assert f'"{c}"' in system, f"the prompt's rubric does not name {c!r}"


# ------------------------------------------------------------------------------------------ staleness

PATH_RE = re.compile(r"(?<![\w/.-])((?:pipeline|classifiers|beam_runners|tests|bench|docs|examples|prompts|\.ci)"
                     r"/[\w./-]*[\w])")


def _named_paths() -> list[tuple[str, str]]:
    sources = [*(REPO / p for p in ("README.md", "Makefile", "pyproject.toml")),
               *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "examples").glob("*")),
               *(f for pkg in ("pipeline", "classifiers", "beam_runners", "tests", "bench")
                 for f in sorted((REPO / pkg).rglob("*")) if f.suffix in (".py", ".md", ".sql", ".yaml"))]
    out = []
    for f in sources:
        if f.is_file():
            for m in PATH_RE.finditer(f.read_text(encoding="utf-8", errors="replace")):
                out.append((str(f.relative_to(REPO)), m.group(1).rstrip(".")))
    return out


GENERATED = ("bench/out",)  # written by the benchmarks, ignored by git


def _exists(path: str) -> bool:
    if path.startswith(GENERATED) or "..." in path:
        return True
    if any(c in path for c in "*{<"):  # a glob or a template: its folder must exist
        path = re.split(r"[*{<]", path)[0].rsplit("/", 1)[0]
    return (REPO / path).exists()


def test_every_path_the_docs_comments_and_makefile_name_exists() -> None:
    missing = sorted({(src, p) for src, p in _named_paths() if not _exists(p)})
    assert not missing, "named but not in the repository:\n" + "\n".join(f"  {s}: {p}" for s, p in missing)


def test_make_targets_name_files_that_exist() -> None:
    makefile = (REPO / "Makefile").read_text()
    for script in re.findall(r"\$\(PY\) (\S+\.py)", makefile):
        assert (REPO / script).is_file(), script


def test_no_absolute_path_outside_the_repository_in_the_code() -> None:
    for module, f in module_files().items():
        for value in _string_constants(ast.parse(f.read_text(encoding="utf-8"))):
            assert not re.match(r"^/(work|home|root|Users)/", value), (module, value)


def test_every_error_class_is_raised_somewhere() -> None:
    from pipeline.core import errors

    code = "\n".join(f.read_text(encoding="utf-8") for f in module_files().values())
    for name, cls in vars(errors).items():
        if isinstance(cls, type) and issubclass(cls, Exception) and cls is not errors.PmcCurateError:
            assert re.search(rf"raise {name}\(|except {name}\b|except \([^)]*{name}", code), name


def test_no_module_past_about_400_lines() -> None:
    long = {m: n for m, f in module_files().items() if (n := len(f.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_json_files_of_the_package_parse() -> None:
    for f in sorted((REPO / "prompts").rglob("*.json")):
        json.loads(f.read_text(encoding="utf-8"))


def test_stage_docs_name_real_stage_modules() -> None:
    text = Path(stages.__file__).read_text(encoding="utf-8")
    for s in stages.STAGES:
        assert s.name in text
