-- BE-ClinicalCase: articles with at least `min_paragraphs` clinical-case paragraphs are repeated
-- `factor` times (whole articles); every other article appears once.
-- param: factor = 10  # copies of an article holding a clinical case (paper: 10)
-- param: min_paragraphs = 1  # clinical-case paragraphs an article needs (paper: at least one)
WITH article AS (
    SELECT article_id, count_if(document_type = $type_clinical_case) AS n_cases
    FROM corpus
    GROUP BY article_id
)
SELECT c.id,
       CASE WHEN a.n_cases >= $min_paragraphs THEN $factor ELSE 1 END AS repeat
FROM corpus AS c
JOIN article AS a USING (article_id)
