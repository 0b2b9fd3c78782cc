-- BE-Base: every labelled paragraph, once, unchanged (Biomed-Enriched, arXiv 2506.20331, section 4).
-- Paragraphs without a label (rejected by the classifier) are not part of any subset.
SELECT id
FROM corpus
