"""The dataset card: README.md of a subset, a Hugging Face card (YAML header, then what the subset is
and how it was built), written from the manifest."""

from __future__ import annotations

from typing import Any

from pipeline.core.tables import describe_teachers
from pipeline.stages.curate.recipes import Recipe


def card(name: str, recipe: Recipe, manifest: dict[str, Any]) -> str:
    """A Hugging Face dataset card: YAML header, then what the subset is and how it was built."""
    import yaml

    stats = manifest["stats"]
    n = stats["rows"]
    size = next(c for lim, c in ((1e3, "n<1K"), (1e4, "1K<n<10K"), (1e5, "10K<n<100K"), (1e6, "100K<n<1M"),
                                  (1e7, "1M<n<10M"), (1e8, "10M<n<100M"), (float("inf"), "n>100M")) if n < lim)  # fmt: skip
    languages = [k for k in stats["language"] if k not in ("null", "und")] or ["en"]
    commercial = stats["commercial"]
    license_id = "other"
    header = {
        "pretty_name": f"pmc-curate {name}",
        "language": languages,
        "license": license_id,
        "license_details": "per-article licenses from PMC Open Access; see license_url of each row and the counts below",
        "task_categories": ["text-generation", "fill-mask"],
        "size_categories": [size],
        "tags": ["biomedical", "clinical", "pubmed-central", "pretraining", "biomed-enriched"],
        "configs": [
            {"config_name": "default", "data_files": [{"split": "train", "path": "data/*.parquet"}]},
        ],
    }
    if manifest["files"]["export"]:
        header["configs"].append(
            {"config_name": "documents", "data_files": [{"split": "train", "path": f"export/*.{manifest['export']['extension']}"}]})
    if manifest["files"].get("biomed_enriched"):
        header["configs"].append(
            {"config_name": "biomed-enriched", "data_files": [{"split": "train", "path": "biomed-enriched/part-*.parquet"}]})
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    params = "\n".join(f"| `{k}` | `{cell(repr(v))}` | {cell(recipe.params[k].help)} |" for k, v in manifest["parameters"].items())
    lic = "\n".join(f"| {k} | {v['articles']} | {v['documents']} |" for k, v in stats["license"].items())
    dist = "\n".join(
        f"| {head} | " + ", ".join(f"{k}: {v}" for k, v in stats["labels"][head].items()) + " |"
        for head in ("document_type", "domain", "educational_score_rounded")
    )
    tokens = manifest["tokens"]
    return (
        "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n\n"
        f"# {name}\n\n"
        f"A pretraining subset of PubMed Central Open Access built by `pmc-curate curate` with the recipe "
        f"`{recipe.name}` (sha256 `{recipe.sha256[:16]}…`): {recipe.description}\n\n"
        f"- rows (paragraph copies): {n:,}; unique paragraphs: {stats['unique_paragraphs']:,}\n"
        f"- articles: {stats['articles']:,}; documents (article copies): {stats['documents']:,}\n"
        f"- tokens ({tokens['tokenizer']}): {tokens['text']:,} in `text`"
        + (f", {tokens['export']:,} in the export documents\n" if tokens["export"] is not None else "\n")
        + f"- commercial-only: {manifest['commercial_only']}; labels from: `{manifest['labels_source']}`\n"
        + (f"- teacher: {describe_teachers(manifest['teachers'])}\n" if manifest.get("teachers") else "")
        + _snapshot_line(manifest.get("snapshot") or {}) + "\n"
        "## Files\n\n"
        "- `data/*.parquet`: one row per paragraph copy, columns named as in "
        "[almanach/Biomed-Enriched](https://huggingface.co/datasets/almanach/Biomed-Enriched) where they "
        "overlap, plus `copy` (0-based copy of the article), `prefix`, `n_tokens`, `license`, `commercial`, "
        "`year`, `title`, `journal`. Rows are grouped by article, copies of an article next to each other, "
        "paragraphs in document order.\n"
        + (f"- `export/*.{manifest['export']['extension']}`: one JSON object per article copy "
           '`{"id": "<pmcid>#<copy>", "text": ..., "metadata": {...}}`; section titles and paragraphs joined '
           "by blank lines.\n" if manifest["files"]["export"] else "")
        + ("- `biomed-enriched/part-*.parquet`: one row per selected paragraph in the exact schema of "
           "almanach/Biomed-Enriched (`article_id` the PMID where known, `id` `{article_id}_p{N}`, vectors in "
           "their order); `biomed-enriched/pmid_xml_index.parquet`: pmid -> xml_path for their re-population "
           "tool.\n" if manifest["files"].get("biomed_enriched") else "")
        + "- `manifest.json`: counts, label distributions, licenses, parameters, recipe text and hash, input "
        "fingerprints.\n\n"
        "## Parameters\n\n| name | value | meaning |\n|---|---|---|\n" + (params or "| - | - | - |") + "\n\n"
        "## Labels (rows)\n\n| label | counts |\n|---|---|\n" + dist + "\n\n"
        "## Licenses\n\nEach article keeps its own license; check `license_url` before use. "
        f"Commercial-use articles: {commercial.get('true', {}).get('articles', 0)}, "
        f"non-commercial: {commercial.get('false', {}).get('articles', 0)}.\n\n"
        "| license | articles | documents |\n|---|---|---|\n" + lic + "\n\n"
        "## Recipe\n\n```sql\n" + recipe.text.strip() + "\n```\n\n"
        "## Citation\n\nLabels follow Touchent, Godey & de la Clergerie, *Biomed-Enriched: A Biomedical Dataset "
        "Enriched with LLMs for Pretraining and Extracting Rare and Hidden Content*, arXiv:2506.20331.\n"
    )


def _snapshot_line(snap: dict[str, Any]) -> str:
    """How current the text is, as NLM's redistribution terms ask derived data to state."""
    if not snap.get("newest"):
        return ("- PMC snapshot: unknown (parsed from files without PMC Cloud metadata, e.g. a frozen bulk "
                "package; the package dates tell how current it is)\n")  # fmt: skip
    older = {k: n for k, n in snap["articles"].items() if k != snap["newest"]}
    return (f"- PMC snapshot: PMC Open Access as of the NLM inventory of {snap['newest']} "
            f"({snap['articles'][snap['newest']]:,} articles read from it"
            + ("; " + ", ".join(f"{n:,} unchanged since {k}" for k, n in older.items()) if older else "") + ")\n")
