-- Encoder recipe (Biomed-Enriched authors' encoder pretraining mix): paragraphs with
-- educational_score >= min_score; articles with a clinical-case paragraph repeated
-- clinicalcase_factor times, otherwise predominantly clinical articles clinical_factor times.
-- Flags are computed on all of the article's labelled paragraphs; the largest factor wins.
-- param: min_score = 3.0  # keep paragraphs with educational_score >= min_score
-- param: clinicalcase_factor = 100  # copies of an article with >= 1 clinical-case paragraph
-- param: clinical_factor = 10  # copies of a predominantly clinical article
-- param: clinical_share = 0.5  # clinical when the clinical-domain share is > clinical_share
WITH article AS (
    SELECT article_id,
           avg(CAST(domain = $domain_clinical AS DOUBLE)) AS clinical_share,
           count_if(document_type = $type_clinical_case) AS n_cases
    FROM corpus
    GROUP BY article_id
)
SELECT c.id,
       CASE
           WHEN a.n_cases >= 1 THEN $clinicalcase_factor
           WHEN a.clinical_share > $clinical_share THEN $clinical_factor
           ELSE 1
       END AS repeat
FROM corpus AS c
JOIN article AS a USING (article_id)
WHERE c.educational_score >= $min_score
