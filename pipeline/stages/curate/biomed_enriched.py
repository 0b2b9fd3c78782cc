"""`curate --export-format biomed-enriched`: a subset in the published Biomed-Enriched schema.

    biomed-enriched/part-NNNNN.parquet     exactly their columns, order and types (pipeline.interop.biomed_enriched)
    biomed-enriched/pmid_xml_index.parquet pmid -> xml_path, the index their re-population tool reads

One row per selected paragraph (their schema has no copy column, so upsampling copies are not
repeated: `data/` holds those). `article_id` is the PMID where the article has one, else the PMCID;
`id` is `{article_id}_p{N}`, N the paragraph's 0-based position among the article's paragraphs in
W/paragraphs (document order), so it does not depend on the recipe. The vectors are put back in
their order. `text` is our rendering (pipeline/jats/text.py), not theirs; see docs/interop.md.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from pipeline.interop import biomed_enriched as BE
from pipeline.stages.curate.selection import PATH_KEY
from pipeline.stages.curate.writers import ShardedParquet

FOLDER = "biomed-enriched"
INDEX = "pmid_xml_index.parquet"
def write_biomed_enriched(con: duckdb.DuckDBPyConnection, staging: Path, max_bytes: int, batch_rows: int) -> list[Path]:
    """Write the subset's selected paragraphs (temp table `meta`) in their schema under staging/biomed-enriched."""
    folder = staging / FOLDER
    folder.mkdir(parents=True)
    # N over every paragraph of the selected articles, not only the selected ones: stable across recipes.
    con.execute(
        f"""CREATE TEMP TABLE be_n AS
        SELECT p.id, row_number() OVER (PARTITION BY p.article_id ORDER BY {PATH_KEY}) - 1 AS n
        FROM paragraphs AS p WHERE p.article_id IN (SELECT DISTINCT article_id FROM meta)"""
    )
    query = f"""
        SELECT coalesce(a.pmid, m.article_id) || '_p' || CAST(be_n.n AS VARCHAR) AS id,
               coalesce(a.pmid, m.article_id) AS article_id, m.path, p.text, m.language, m.section_title,
               m.domain, m.document_type, m.educational_score,
               {BE.permute_sql("CAST(m.domain_scores AS DOUBLE[])", BE.ours("domain"), BE.ORDERS["domain"])} AS domain_scores,
               {BE.permute_sql("CAST(m.document_type_scores AS DOUBLE[])", BE.ours("document_type"),
                               BE.ORDERS["document_type"])} AS document_type_scores,
               m.language_score, m.authors, m.article_url, m.license_url
        FROM meta AS m JOIN paragraphs AS p ON p.id = m.id JOIN be_n ON be_n.id = m.id
        JOIN articles AS a ON a.pmcid = m.article_id
        ORDER BY m.article_id, m._key"""
    parquet = ShardedParquet(folder, max_bytes)
    try:
        for batch in con.sql(query).to_arrow_reader(batch_rows):
            if batch.num_rows:
                parquet.write(pa.Table.from_batches([batch]).cast(BE.SCHEMA))
    finally:
        parquet.close()
    if not parquet.files:
        import pyarrow.parquet as pq

        path = folder / "part-00000.parquet"
        pq.write_table(BE.SCHEMA.empty_table(), path, compression="zstd")
        parquet.files.append(path)
    index = folder / INDEX
    con.execute(
        f"""COPY (SELECT DISTINCT a.pmid, a.source AS xml_path FROM articles AS a
                  WHERE a.pmid IS NOT NULL AND a.pmcid IN (SELECT DISTINCT article_id FROM meta) ORDER BY 1)
            TO '{index}' (FORMAT parquet)"""
    )
    return [*parquet.files, index]
