"""Curate: every built-in recipe checked exactly over a small corpus whose right answer is known."""

from __future__ import annotations

import gzip
import io
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline.core import labels as L
from pipeline.core.errors import ConfigError
from pipeline.core.records import Annotation, Article, Label, Paragraph, arrow_schema, as_row
from pipeline.stages import curate as C

_TOK = None


def tokenizer():
    global _TOK
    if _TOK is None:
        _TOK = C.load_tokenizer()
    return _TOK


def ntok(text: str) -> int:
    return len(tokenizer().encode(text, add_special_tokens=False).ids)


CC, STUDY, REVIEW, OTHER = L.DOCUMENT_TYPES
CLIN, BIO, OTH = L.DOMAINS

# (article, path, section_title, text, language, document_type, domain, score); None type = unlabelled.
# PMC1: 3/4 clinical (predominantly clinical); paths check numeric order (p[10] after p[2]).
# PMC2: non-commercial; its only clinical case scores 1 (dropped by the filter, yet the article counts).
# PMC3: one French paragraph.  PMC4: clinical share exactly 0.5 (not "predominantly"); all scores < 3.
PARAS = [
    ("PMC1", "sec[0]/p[10]", "Introduction", "Third intro paragraph, on sepsis.", "en", STUDY, CLIN, 3.0),
    ("PMC1", "sec[0]/p[0]", "Introduction", "First intro paragraph about the heart.", "en", STUDY, CLIN, 4.0),
    ("PMC1", "sec[1]/p[0]", "Methods > Patients", "Patients were enrolled in 2019.", "en", STUDY, BIO, 5.0),
    ("PMC1", "sec[0]/p[2]", "Introduction", "Second intro paragraph: kidneys!", "en", STUDY, CLIN, 2.0),
    ("PMC1", "sec[2]/p[0]", "Discussion", "An unlabelled paragraph.", "en", None, None, None),
    ("PMC2", "sec[0]/p[0]", "Case", "A 54-year-old man presented with fever.", "en", CC, BIO, 1.0),
    ("PMC2", "sec[0]/p[1]", "Case", "Cultures grew E. coli.", "en", STUDY, BIO, 3.0),
    ("PMC3", "p[0]", None, "Le patient a été admis aux urgences.", "fr", REVIEW, OTH, 5.0),
    ("PMC3", "p[1]", None, "The review covers twelve trials.", "en", REVIEW, OTH, 4.0),
    ("PMC4", "sec[0]/p[0]", "Results", "Blood pressure fell.", "en", OTHER, CLIN, 2.0),
    ("PMC4", "sec[0]/p[1]", "Results", "Mice gained weight.", "en", OTHER, BIO, 2.4),
]
ARTICLES = {  # pmcid -> (license, commercial, year)
    "PMC1": ("CC BY", True, 2019),
    "PMC2": ("CC BY-NC", False, 2020),
    "PMC3": ("CC0", True, 2021),
    "PMC4": ("CC BY", True, 2021),
}


def build_workdir(root: Path, *, exact_tokens: bool = True, labels: bool = True, annotations: bool = False) -> Path:
    """Write articles, paragraphs (two files, shuffled order) and labels/annotations Parquet tables."""
    paras = [
        Paragraph(id=f"{a}/{path}", article_id=a, path=path, section_title=title, text=text,
                  n_tokens=ntok(text) if exact_tokens else len(text.split()), language=lang,
                  language_score=0.9)  # fmt: skip
        for a, path, title, text, lang, *_ in PARAS
    ]
    arts = [
        Article(pmcid=a, pmid=None, doi=None, title=f"Title of {a}", journal="J", year=year, article_type="research-article",
                license=lic, license_url=f"https://example.org/{lic.replace(' ', '-')}", commercial=com, language="en",
                n_paragraphs=sum(1 for p in paras if p.article_id == a), source=f"{a}.xml", authors=["A. B."],
                article_url=f"https://pmc.ncbi.nlm.nih.gov/articles/{a}/")  # fmt: skip
        for a, (lic, com, year) in ARTICLES.items()
    ]
    labs = [
        Label(id=f"{a}/{path}", article_id=a, document_type=t, domain=d, educational_score=s,
              document_type_scores=[0.25] * 4, domain_scores=[1 / 3] * 3, model_id="test-student", truncated=False)  # fmt: skip
        for a, path, _t, _x, _l, t, d, s in PARAS
        if t is not None
    ]

    def write(table: str, cls: type, rows: list, parts: int = 1, metadata: dict | None = None) -> None:
        d = root / table
        d.mkdir(parents=True, exist_ok=True)
        for i in range(parts):
            chunk = rows[i::parts]
            pq.write_table(pa.Table.from_pylist([as_row(r) for r in chunk], schema=arrow_schema(cls, metadata)),
                           d / f"part-{i}.parquet")  # fmt: skip

    write("articles", Article, arts)
    write("paragraphs", Paragraph, paras, parts=2,
          metadata={"tokenizer": C.EXPORT_TOKENIZER if exact_tokens else "whitespace"})  # fmt: skip
    if labels:
        write("labels", Label, labs)
    if annotations:
        anns = [
            Annotation(id=lab.id, article_id=lab.article_id, document_type=lab.document_type, domain=lab.domain,
                       educational_score=round(lab.educational_score), teacher_model="t", prompt_version="v1",
                       prompt_hash="h", input_hash="i", prompt_tokens=1, completion_tokens=1, latency_s=0.1, attempts=1)  # fmt: skip
            for lab in labs
        ]
        write("annotations", Annotation, anns)
    return root


@pytest.fixture
def wd(tmp_path: Path) -> Path:
    return build_workdir(tmp_path / "w")


def build(wd: Path, recipe: str, **kw) -> tuple[dict, pa.Table]:
    manifest = C.curate(C.CurateConfig(workdir=wd, recipe=recipe, threads=2, **kw))
    out = wd / "subsets" / manifest["name"]
    table = pq.read_table(out / "data")
    return manifest, table


def read_export(folder: Path) -> list[dict]:
    docs = []
    for f in sorted(folder.iterdir()):
        raw = f.read_bytes()
        if f.name.endswith(".zst"):
            data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw), read_across_frames=True).read()
        else:
            data = gzip.decompress(raw)
        docs += [json.loads(line) for line in data.decode().splitlines()]
    return docs


def counts(table: pa.Table) -> dict[str, int]:
    """Rows per article id."""
    out: dict[str, int] = {}
    for a in table.column("pmcid").to_pylist():
        out[a] = out.get(a, 0) + 1
    return out


# Exact expected rows per article for every built-in recipe with default parameters.
EXPECTED = {
    "be-base": {"PMC1": 4, "PMC2": 2, "PMC3": 2, "PMC4": 2},
    "be-educational": {"PMC1": 3, "PMC2": 1, "PMC3": 2},
    "be-clinical": {"PMC1": 40, "PMC2": 2, "PMC3": 2, "PMC4": 2},
    "be-clinicalcase": {"PMC1": 4, "PMC2": 20, "PMC3": 2, "PMC4": 2},
    "be-french": {"PMC1": 4, "PMC2": 2, "PMC3": 20, "PMC4": 2},
    "be-all": {"PMC1": 30, "PMC2": 10, "PMC3": 20},
    "encoder": {"PMC1": 30, "PMC2": 100, "PMC3": 2},
}
COPIES = {  # copies of each article
    "be-base": {"PMC1": 1, "PMC2": 1, "PMC3": 1, "PMC4": 1},
    "be-educational": {"PMC1": 1, "PMC2": 1, "PMC3": 1},
    "be-clinical": {"PMC1": 10, "PMC2": 1, "PMC3": 1, "PMC4": 1},
    "be-clinicalcase": {"PMC1": 1, "PMC2": 10, "PMC3": 1, "PMC4": 1},
    "be-french": {"PMC1": 1, "PMC2": 1, "PMC3": 10, "PMC4": 1},
    "be-all": {"PMC1": 10, "PMC2": 10, "PMC3": 10},
    "encoder": {"PMC1": 10, "PMC2": 100, "PMC3": 1},
}


def test_every_builtin_recipe_is_tested() -> None:
    assert set(C.builtin_recipes()) == set(EXPECTED)


@pytest.mark.parametrize("recipe", sorted(EXPECTED))
def test_recipe_rows_copies_and_order(wd: Path, recipe: str) -> None:
    manifest, table = build(wd, recipe)
    assert counts(table) == EXPECTED[recipe]
    assert manifest["stats"]["rows"] == table.num_rows == sum(EXPECTED[recipe].values())
    assert manifest["stats"]["articles"] == len(EXPECTED[recipe])
    assert manifest["stats"]["documents"] == sum(COPIES[recipe].values())
    # Grouped by article; copies of an article consecutive; each copy holds the article's kept
    # paragraphs in document order (numeric path order).
    rows = table.select(["pmcid", "copy", "path"]).to_pylist()
    seen_articles: list[str] = []
    for r in rows:
        if not seen_articles or seen_articles[-1] != r["pmcid"]:
            assert r["pmcid"] not in seen_articles, "article split into several runs"
            seen_articles.append(r["pmcid"])
    for a, n_copies in COPIES[recipe].items():
        mine = [(r["copy"], r["path"]) for r in rows if r["pmcid"] == a]
        per_copy = len(mine) // n_copies
        assert [c for c, _ in mine] == [c for c in range(n_copies) for _ in range(per_copy)]
        paths = [p for _, p in mine[:per_copy]]
        assert paths == sorted(paths, key=lambda p: [int(x) for x in re.findall(r"\[(\d+)\]", p)])
        assert all([p for _, p in mine[i * per_copy:(i + 1) * per_copy]] == paths for i in range(n_copies))


def test_document_order_is_numeric(wd: Path) -> None:
    _, table = build(wd, "be-base")
    pmc1 = [r["path"] for r in table.to_pylist() if r["pmcid"] == "PMC1"]
    assert pmc1 == ["sec[0]/p[0]", "sec[0]/p[2]", "sec[0]/p[10]", "sec[1]/p[0]"]


def test_columns_mean_what_their_names_say_and_carry_labels(wd: Path) -> None:
    _, table = build(wd, "be-base")
    assert table.column_names == list(C.OUTPUT_COLUMNS)
    # A Biomed-Enriched name only where it has their meaning; their id, article_id (PMID) and vectors
    # (their class order) are not ours, so ours have other names, with the order in the schema metadata.
    be = set(C.BIOMED_ENRICHED_COLUMNS)
    assert be & set(table.column_names) == set(C.SHARED_COLUMNS) == be - set(C.RENAMED)
    assert {"paragraph_id", "pmcid", "domain_probs", "type_probs"} <= set(table.column_names)
    meta = json.loads(table.schema.metadata[C.CLASS_ORDER_KEY.encode()])
    assert meta == {"domain_probs": list(L.DOMAINS), "type_probs": list(L.DOCUMENT_TYPES)}
    row = next(r for r in table.to_pylist() if r["paragraph_id"] == "PMC2/sec[0]/p[0]")
    assert row["pmcid"] == "PMC2"
    assert (row["document_type"], row["domain"], row["educational_score"]) == (CC, BIO, 1.0)
    assert row["text"] == "A 54-year-old man presented with fever."
    assert row["license_url"] == "https://example.org/CC-BY-NC" and row["commercial"] is False
    assert row["domain_probs"] == pytest.approx([1 / 3] * 3)
    assert "PMC1/sec[2]/p[0]" not in table.column("paragraph_id").to_pylist()  # unlabelled paragraphs are not selected


def test_be_educational_threshold_is_a_parameter(wd: Path) -> None:
    manifest, table = build(wd, "be-educational", params=["min_score=4.5"])
    assert sorted(table.column("paragraph_id").to_pylist()) == ["PMC1/sec[1]/p[0]", "PMC3/p[0]"]
    assert manifest["parameters"] == {"min_score": 4.5}


def test_factor_parameter(wd: Path) -> None:
    _, table = build(wd, "be-clinical", params=["factor=3"])
    assert counts(table)["PMC1"] == 12


def test_be_all_prefix(wd: Path) -> None:
    _, table = build(wd, "be-all")
    row = next(r for r in table.to_pylist() if r["paragraph_id"] == "PMC3/p[0]" and r["copy"] == 0)
    assert row["prefix"] == "<type: Review | domain: other | educational score: 5>\n"
    assert row["text"] == row["prefix"] + "Le patient a été admis aux urgences."
    _, table = build(wd, "be-all", params=["prefix_format=[%s/%s/%d] "])
    row = next(r for r in table.to_pylist() if r["paragraph_id"] == "PMC3/p[0]")
    assert row["text"] == "[Review/other/5] Le patient a été admis aux urgences."


def test_commercial_only(wd: Path) -> None:
    manifest, table = build(wd, "be-clinicalcase", commercial_only=True)
    assert counts(table) == {"PMC1": 4, "PMC3": 2, "PMC4": 2}  # PMC2 (CC BY-NC) gone, with its upsampling
    assert set(table.column("commercial").to_pylist()) == {True}
    assert manifest["name"] == "be-clinicalcase-commercial"
    assert manifest["stats"]["license"] == {"CC BY": {"articles": 2, "documents": 2}, "CC0": {"articles": 1, "documents": 1}}


def test_manifest_tokens_are_exact(wd: Path) -> None:
    manifest, table = build(wd, "be-all")
    tokens = manifest["tokens"]
    assert tokens["text"] == sum(ntok(t) for t in table.column("text").to_pylist())
    docs = read_export(wd / "subsets" / "be-all" / "export")
    assert tokens["export"] == sum(ntok(d["text"]) for d in docs)
    assert tokens["n_tokens_column"]["same_as_export_tokenizer"] is True
    assert tokens["n_tokens_column"]["tokenizer"] == C.EXPORT_TOKENIZER
    assert tokens["n_tokens_column"]["tokens"] == sum(table.column("n_tokens").to_pylist())


def test_tokens_recounted_when_n_tokens_is_another_tokenizer(tmp_path: Path) -> None:
    wd = build_workdir(tmp_path / "w", exact_tokens=False)
    manifest, table = build(wd, "be-clinical")
    assert manifest["tokens"]["n_tokens_column"]["same_as_export_tokenizer"] is False
    assert manifest["tokens"]["text"] == sum(ntok(t) for t in table.column("text").to_pylist())
    docs = read_export(wd / "subsets" / "be-clinical" / "export")
    assert manifest["tokens"]["export"] == sum(ntok(d["text"]) for d in docs)


def test_export_documents(wd: Path) -> None:
    build(wd, "be-clinical")
    docs = read_export(wd / "subsets" / "be-clinical" / "export")
    assert [d["id"] for d in docs] == [f"PMC1#{i}" for i in range(10)] + ["PMC2#0", "PMC3#0", "PMC4#0"]
    pmc1 = docs[0]
    assert pmc1["text"] == (
        "Introduction\n\nFirst intro paragraph about the heart.\n\nSecond intro paragraph: kidneys!\n\n"
        "Third intro paragraph, on sepsis.\n\nPatients\n\nPatients were enrolled in 2019."
    )
    assert all(d["text"] == pmc1["text"] for d in docs[:10])
    assert pmc1["metadata"]["license"] == "CC BY" and pmc1["metadata"]["copy"] == 0
    assert docs[9]["metadata"]["copy"] == 9
    pmc3 = next(d for d in docs if d["id"] == "PMC3#0")
    assert pmc3["text"] == "Le patient a été admis aux urgences.\n\nThe review covers twelve trials."


def test_export_shards_are_size_bounded_and_gzip_works(wd: Path) -> None:
    manifest = C.curate(C.CurateConfig(workdir=wd, recipe="encoder", compression="gzip", shard_mb=0.000001))
    folder = wd / "subsets" / "encoder" / "export"
    files = sorted(folder.iterdir())
    assert all(f.name.endswith(".jsonl.gz") for f in files)
    docs = read_export(folder)
    assert len(docs) == manifest["stats"]["documents"] == 111
    assert len({d["id"] for d in docs}) == 111


def test_manifest_and_card(wd: Path) -> None:
    manifest, _ = build(wd, "be-french")
    out = wd / "subsets" / "be-french"
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["recipe"]["text"] == (C.RECIPES_DIR / "be-french.sql").read_text()
    import hashlib

    assert on_disk["recipe"]["sha256"] == hashlib.sha256(on_disk["recipe"]["text"].encode()).hexdigest()
    assert on_disk["parameters"] == {"factor": 10, "language": "fr", "min_paragraphs": 1}
    assert on_disk["stats"]["labels"]["document_type"] == {CC: 1, OTHER: 2, REVIEW: 20, STUDY: 5}
    assert on_disk["stats"]["language"] == {"en": 18, "fr": 10}
    assert set(on_disk["inputs"]) == {"articles", "paragraphs", "labels"}
    assert on_disk["inputs"]["paragraphs"]["files"] == 2
    card = (out / "README.md").read_text()
    assert card.startswith("---\n")
    import yaml

    header = yaml.safe_load(card.split("---\n")[1])
    assert header["configs"][0]["data_files"][0]["path"] == "data/*.parquet"
    assert "fr" in header["language"]
    # These articles come from loose files, not the PMC Cloud layout: the snapshot is stated as unknown.
    assert on_disk["snapshot"] == {"newest": None, "articles": {}}
    assert "- PMC snapshot: unknown" in card
    assert on_disk["teachers"] == {} and "- teacher:" not in card  # no annotations in this work directory


def test_a_missing_label_table_names_the_stage_that_writes_it(tmp_path: Path) -> None:
    wd = build_workdir(tmp_path / "w")
    for labels, hint in (("annotations", "run annotate first"), ("imported", "run import-labels first"),
                         ("merged", "run import-labels first")):  # fmt: skip
        with pytest.raises(ConfigError, match=hint):
            build(wd, "be-base", labels=labels)


def test_annotations_stand_in_for_labels(tmp_path: Path) -> None:
    wd = build_workdir(tmp_path / "w", labels=False, annotations=True)
    with pytest.raises(ConfigError, match="labels"):
        build(wd, "be-base")
    manifest, table = build(wd, "be-educational", labels="annotations")
    # Teacher scores are integers: 2.4 -> 2 stays below 3, the other rows as with labels.
    assert counts(table) == EXPECTED["be-educational"]
    assert manifest["labels_source"] == "annotations"
    # who made the labels is on the manifest and the card
    assert set(manifest["teachers"]) == {"t"} and manifest["teachers"]["t"] > 0
    assert f"- teacher: `t` ({manifest['teachers']['t']:,} annotations)" in (wd / "subsets" / "be-educational" / "README.md").read_text()


def test_rerun_replaces_the_subset(wd: Path) -> None:
    build(wd, "be-clinical")
    _, table = build(wd, "be-clinical", params=["factor=2"])
    assert counts(table)["PMC1"] == 8
    assert sorted(p.name for p in (wd / "subsets").iterdir()) == ["be-clinical"]


# ---- user recipes and errors ----------------------------------------------------------------


def test_user_recipe_with_required_param(wd: Path, tmp_path: Path) -> None:
    f = tmp_path / "reviews.sql"
    f.write_text(
        "-- Reviews only, repeated.\n-- param: times  # how many copies\n"
        "SELECT id, $times AS repeat FROM corpus WHERE document_type = $type_review;\n"
    )
    with pytest.raises(ConfigError, match="times"):
        C.curate(C.CurateConfig(workdir=wd, recipe=str(f)))
    _, table = build(wd, str(f), params=["times=3"])
    assert counts(table) == {"PMC3": 6}


def _nothing_written(wd: Path) -> bool:
    d = wd / "subsets"
    return not d.exists() or not any(d.iterdir())


@pytest.mark.parametrize(
    ("sql", "match"),
    [
        ("SELECT id FROM corpus WHERE", "syntax error"),
        ("SELECT id FROM no_such_view", "no_such_view"),
        ("SELECT id FROM corpus WHERE educational_score > $nope", r"\$nope"),
        ("SELECT path FROM corpus", "`id` column"),
        ("SELECT 'PMC9/p[0]' AS id", "not paragraphs"),
        ("SELECT id, CASE WHEN path = 'sec[0]/p[0]' THEN 2 ELSE 1 END AS repeat FROM corpus", "whole articles"),
        ("SELECT id, -1 AS repeat FROM corpus", "integer >= 0"),
        ("SELECT id FROM corpus UNION ALL SELECT id FROM corpus", "more than once"),
    ],
)
def test_bad_recipes_fail_clearly_and_write_nothing(wd: Path, tmp_path: Path, sql: str, match: str) -> None:
    f = tmp_path / "bad.sql"
    f.write_text(sql + "\n")
    with pytest.raises(ConfigError, match=match):
        C.curate(C.CurateConfig(workdir=wd, recipe=str(f)))
    assert _nothing_written(wd)


def test_unknown_param_and_recipe(wd: Path) -> None:
    with pytest.raises(ConfigError, match="unknown parameter 'min_scor'"):
        C.curate(C.CurateConfig(workdir=wd, recipe="be-educational", params=["min_scor=2"]))
    with pytest.raises(ConfigError, match="expected float"):
        C.curate(C.CurateConfig(workdir=wd, recipe="be-clinical", params=["min_share=half"]))
    with pytest.raises(ConfigError, match="unknown recipe"):
        C.curate(C.CurateConfig(workdir=wd, recipe="be-nothing"))
    assert _nothing_written(wd)


def test_missing_input_table(tmp_path: Path) -> None:
    wd = build_workdir(tmp_path / "w", labels=False)
    with pytest.raises(ConfigError, match="labels table"):
        C.curate(C.CurateConfig(workdir=wd, recipe="be-base"))
    assert _nothing_written(wd)


def test_failure_keeps_previous_subset(wd: Path, tmp_path: Path) -> None:
    build(wd, "be-base")
    f = tmp_path / "be-base.sql"
    f.write_text("SELECT id FROM corpus WHERE\n")
    with pytest.raises(ConfigError):
        C.curate(C.CurateConfig(workdir=wd, recipe=str(f)))
    assert sorted(p.name for p in (wd / "subsets").iterdir()) == ["be-base"]
    assert pq.read_table(wd / "subsets" / "be-base" / "data").num_rows == 10


def test_params_are_bound_not_pasted(wd: Path) -> None:
    # A value that would break (or inject into) SQL if it were pasted into the text.
    _, table = build(wd, "be-french", params=["language=fr' OR 1=1 --"])
    assert counts(table) == EXPECTED["be-base"]  # no article matches that language: nothing upsampled


def test_expand_indices() -> None:
    import numpy as np

    idx, copy = C.expand_indices(np.array(["A", "A", "A", "B"]), np.array([2, 2, 2, 1]))
    assert idx.tolist() == [0, 1, 2, 0, 1, 2, 3]
    assert copy.tolist() == [0, 0, 0, 1, 1, 1, 0]


# ---- the label schema is the only source of label values ------------------------------------

_LABEL_VALUES = {v.lower() for v in L.DOCUMENT_TYPES + L.DOMAINS}


@pytest.mark.parametrize("recipe", C.builtin_recipes())
def test_recipes_use_label_schema_bindings_only(recipe: str) -> None:
    r = C.load_recipe(recipe)
    body = re.sub(r"--[^\n]*", " ", r.sql)
    literals = re.findall(r"'((?:[^']|'')*)'", body)
    assert not [s for s in literals if s.lower() in _LABEL_VALUES], "label values must be bound ($type_*, $domain_*)"
    # Every placeholder resolves to a declared parameter or a label binding from pipeline.labels.
    values, bindings = C.resolve_params(r, [])
    bound_labels = {k: v for k, v in bindings.items() if k not in values}
    assert set(bound_labels.values()) <= set(L.DOCUMENT_TYPES) | set(L.DOMAINS)
    # Label columns the recipes filter on are the schema's names.
    for col in ("document_type", "domain", "educational_score"):
        if col in body:
            assert col in L.LABEL_COLUMNS


def test_label_bindings_follow_schema() -> None:
    b = C.label_bindings()
    assert [b[f"type_{_slug(v)}"] for v in L.DOCUMENT_TYPES] == list(L.DOCUMENT_TYPES)
    assert [b[f"domain_{_slug(v)}"] for v in L.DOMAINS] == list(L.DOMAINS)


def test_cli(wd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import main

    assert main(["curate", "--workdir", str(wd), "--recipe", "be-clinical", "--param", "factor=2", "--threads", "1"]) == 0
    assert "be-clinical: 14 rows" in capsys.readouterr().out
    assert main(["curate", "--workdir", str(wd), "--recipe", "be-clinical", "--param", "fctor=2"]) == 2
    assert "unknown parameter" in capsys.readouterr().err


def test_empty_subset_is_valid(wd: Path, tmp_path: Path) -> None:
    f = tmp_path / "nothing.sql"
    f.write_text("SELECT id FROM corpus WHERE educational_score > $score_max\n")
    manifest, table = build(wd, str(f))
    assert table.num_rows == 0 and table.column_names == list(C.OUTPUT_COLUMNS)
    assert manifest["stats"]["rows"] == 0 and manifest["tokens"]["text"] == 0


def _slug(value: str) -> str:
    """The documented binding naming: lowercase, runs of other characters to one underscore."""
    return re.sub(r"[^a-z0-9]+", "_", value.lower()).strip("_")


def test_count_tokenizer_counts_in_the_users_tokens(wd: Path, tmp_path: Path) -> None:
    """--count-tokenizer: the manifest's token totals in another tokenizer (here a whitespace word
    tokenizer saved as tokenizer.json), named in the manifest without a local path."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = sorted({w for p in PARAS for w in p[3].split()} | {"[UNK]"})
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    folder = tmp_path / "mytok"
    folder.mkdir()
    tok.save(str(folder / "tokenizer.json"))
    manifest, table = build(wd, "be-clinical", count_tokenizer=str(folder), export=False)
    expected = sum(len(t.split()) for t in table.column("text").to_pylist())
    assert manifest["tokens"]["text"] == expected
    assert manifest["tokens"]["count_tokenizer"] == f"{tmp_path.name}/mytok"
    assert manifest["tokens"]["n_tokens_column"]["same_as_export_tokenizer"] is False
    assert str(tmp_path) not in (wd / "subsets" / "be-clinical" / "manifest.json").read_text()
    default, _ = build(wd, "be-clinical", export=False)
    assert default["tokens"]["count_tokenizer"] == "default" and default["tokens"]["text"] != expected
    with pytest.raises(ConfigError, match="--count-tokenizer"):
        build(wd, "be-clinical", count_tokenizer=str(tmp_path / "nowhere"))
