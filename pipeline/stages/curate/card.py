"""The dataset card: README.md of a subset, a Hugging Face card (YAML header, then what the subset is
and how it was built), written from the manifest.

The header is built with huggingface_hub's DatasetCardData and the whole card parsed back with
DatasetCard (a malformed header fails the run, not the upload); `license: other` comes with the
`license_name` / `license_link` keys the Hub expects. The body opens with the provenance lines
(pipeline.core.provenance): the stand-in warning first when a stand-in or heuristic teacher made
the labels. (DatasetCard.validate() asks the Hub over the network; curate runs offline.)
"""

from __future__ import annotations

from typing import Any

from pipeline.core import provenance
from pipeline.core.errors import ConfigError
from pipeline.core.labels import HEADS_BY_NAME
from pipeline.core.tables import describe_teachers
from pipeline.stages.curate.recipes import Recipe

LICENSE_NAME = "pmc-open-access-per-article"
LICENSE_LINK = "https://pmc.ncbi.nlm.nih.gov/tools/openftlist/"


def card(name: str, recipe: Recipe, manifest: dict[str, Any], filters: str = "") -> str:
    """A Hugging Face dataset card: YAML header, then what the subset is and how it was built."""
    from huggingface_hub import DatasetCard, DatasetCardData

    data = DatasetCardData(**_header(name, manifest))
    built = DatasetCard("---\n" + data.to_yaml() + "\n---\n\n" + _card_text(name, recipe, manifest, filters))
    check_card(built.content)
    return str(built.content)


def check_card(content: str) -> None:
    """Parse a card back (huggingface_hub.DatasetCard) and check the keys the Hub requires offline."""
    from huggingface_hub import DatasetCard

    try:
        data = DatasetCard(content).data.to_dict()
    except Exception as e:  # the library raises ValueError or yaml errors
        raise ConfigError(f"the dataset card does not parse as a Hugging Face card: {e}") from e
    if data.get("license") == "other" and not (data.get("license_name") and data.get("license_link")):
        raise ConfigError("a dataset card with license 'other' needs license_name and license_link")
    for key in ("pretty_name", "configs", "language"):
        if not data.get(key):
            raise ConfigError(f"the dataset card has no {key}")


def _header(name: str, manifest: dict[str, Any]) -> dict[str, Any]:
    stats = manifest["stats"]
    n = stats["rows"]
    size = next(c for lim, c in ((1e3, "n<1K"), (1e4, "1K<n<10K"), (1e5, "10K<n<100K"), (1e6, "100K<n<1M"),
                                  (1e7, "1M<n<10M"), (1e8, "10M<n<100M"), (float("inf"), "n>100M")) if n < lim)  # fmt: skip
    languages = [k for k in stats["language"] if k not in ("null", "und")] or ["en"]
    stand_in = (manifest.get("provenance") or {}).get("stand_in")
    header = {
        "pretty_name": f"pmc-curate {name}" + (" (STAND-IN LABELS)" if stand_in else ""),
        "language": languages,
        "license": "other",
        "license_name": LICENSE_NAME,
        "license_link": LICENSE_LINK,
        "license_details": "per-article licenses from PMC Open Access; see license_url of each row and the counts below",
        "task_categories": ["text-generation", "fill-mask"],
        "size_categories": [size],
        "tags": ["biomedical", "clinical", "pubmed-central", "pretraining", "biomed-enriched"]
                + (["stand-in-labels"] if stand_in else []),
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
    return header


def _card_text(name: str, recipe: Recipe, manifest: dict[str, Any], filters: str = "") -> str:
    """The card's Markdown body."""
    stats = manifest["stats"]
    n = stats["rows"]
    commercial = stats["commercial"]

    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    params = "\n".join(f"| `{k}` | `{cell(repr(v))}` | {cell(recipe.params[k].help)} |" for k, v in manifest["parameters"].items())
    lic = "\n".join(f"| {k} | {v['articles']} | {v['documents']} |" for k, v in stats["license"].items())
    dist = "\n".join(
        f"| {head} | " + ", ".join(f"{k}: {v}" for k, v in stats["labels"][head].items()) + " |"
        for head in ("document_type", "domain", "educational_score_rounded")
    )
    tokens = manifest["tokens"]
    prov = manifest.get("provenance")
    return (
        f"# {name}\n\n" + "\n".join(provenance.header_lines(prov) if prov else []) + "\n"
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
        "- `data/*.parquet`: one row per paragraph copy. A column named as in "
        "[almanach/Biomed-Enriched](https://huggingface.co/datasets/almanach/Biomed-Enriched) has their "
        "meaning; `paragraph_id` (ours, `PMC…/sec[0]/p[0]`; their `id` is `{PMID}_p{N}`), `pmcid` (their "
        "`article_id` is the PMID), `domain_probs` and `type_probs` (probabilities in our class order: "
        f"domain {', '.join(HEADS_BY_NAME['domain'].classes)}; type {', '.join(HEADS_BY_NAME['document_type'].classes)}; "
        "also in the Parquet schema metadata `pmc_curate.class_order`) are ours, as are `copy` (0-based copy "
        "of the article), `prefix`, `n_tokens`, `license`, `commercial`, `year`, `title`, `journal`. Rows are "
        "grouped by article, copies of an article next to each other, paragraphs in document order.\n"
        + (f"- `export/*.{manifest['export']['extension']}`: one JSON object per article copy "
           '`{"id": "<pmcid>#<copy>", "text": ..., "metadata": {...}}`; section titles and paragraphs joined '
           "by blank lines.\n" if manifest["files"]["export"] else "")
        + ("- `biomed-enriched/part-*.parquet`: one row per selected paragraph in the exact schema of "
           "almanach/Biomed-Enriched (`article_id` the PMID where known, `id` `{article_id}_p{N}`, vectors in "
           "their order); `biomed-enriched/pmid_xml_index.parquet`: pmid -> xml_path for their re-population "
           "tool.\n" if manifest["files"].get("biomed_enriched") else "")
        + "- `manifest.json`: counts, label distributions, licenses, parameters, recipe text and hash, input "
        "fingerprints.\n\n"
        + _budget_section(manifest.get("budget"))
        + "## Parameters\n\n| name | value | meaning |\n|---|---|---|\n" + (params or "| - | - | - |") + "\n\n"
        + filters
        + "## Labels (rows)\n\n| label | counts |\n|---|---|\n" + dist + "\n\n"
        "## Licenses\n\nEach article keeps its own license; check `license_url` before use. "
        f"Commercial-use articles: {commercial.get('true', {}).get('articles', 0)}, "
        f"non-commercial: {commercial.get('false', {}).get('articles', 0)}.\n\n"
        "| license | articles | documents |\n|---|---|---|\n" + lic + "\n\n"
        "## Recipe\n\n```sql\n" + recipe.text.strip() + "\n```\n\n"
        "## Citation\n\nLabels follow Touchent, Godey & de la Clergerie, *Biomed-Enriched: A Biomedical Dataset "
        "Enriched with LLMs for Pretraining and Extracting Rare and Hidden Content*, arXiv:2506.20331.\n"
    )


def _budget_section(b: dict[str, Any] | None) -> str:
    """The subset in the target tokenizer's tokens, per component (curate --tokenizer / --target-tokens)."""
    if not b:
        return ""
    tok = b["tokenizer"]
    rows = "\n".join(f"| {c['name']} | {c['documents']:,} | {c['tokens']:,} | {c['repeat']} | {c['budget_tokens']:,} | "
                     + ("n/a" if c["epochs"] is None else f"{c['epochs']:.4g}") + " |" for c in b["components"])
    target = f"scaled to exactly {b['target_tokens']:,} tokens" if b["target_tokens"] is not None else "the recipe's repeats"
    return (f"## Token budget\n\nIn `{tok['name']}` tokens (sha256 `{tok['sha256'][:16]}…`), counted {b['counted']}; "
            f"{b['distinct_tokens']:,} distinct, {b['total_tokens']:,} to train on ({target}). "
            "`pmc-curate export` writes these weights into the trainer's mixture file.\n\n"
            "| component | documents | tokens | recipe repeat | tokens to draw | epochs |\n"
            "|---|---:|---:|---:|---:|---:|\n" + rows + "\n\n")


def _snapshot_line(snap: dict[str, Any]) -> str:
    """How current the text is, as NLM's redistribution terms ask derived data to state."""
    if not snap.get("newest"):
        return ("- PMC snapshot: unknown (parsed from files without PMC Cloud metadata, e.g. a frozen bulk "
                "package; the package dates tell how current it is)\n")  # fmt: skip
    older = {k: n for k, n in snap["articles"].items() if k != snap["newest"]}
    return (f"- PMC snapshot: PMC Open Access as of the NLM inventory of {snap['newest']} "
            f"({snap['articles'][snap['newest']]:,} articles read from it"
            + ("; " + ", ".join(f"{n:,} unchanged since {k}" for k, n in older.items()) if older else "") + ")\n")
