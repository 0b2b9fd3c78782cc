"""Interoperability with other releases of the same corpus (the published Biomed-Enriched dataset).

    biomed_enriched.py   its schema, class orders, and the check that an import's vector order holds
    import_labels.py     `pmc-curate import-labels`: its labels -> W/labels_imported, joined by (PMID, path)
    export.py            `curate --export-format biomed-enriched`: a subset in its exact schema

Their text rendering and path resolution are parse-side: pipeline/jats/biomed_enriched.py.
"""
