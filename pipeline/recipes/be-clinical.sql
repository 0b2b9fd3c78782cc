-- BE-Clinical: articles whose paragraphs are predominantly in the clinical domain are repeated
-- `factor` times (whole articles, every paragraph); every other article appears once.
-- "Predominantly" = the share of the article's labelled paragraphs labelled clinical is above
-- min_share (a strict majority by default).
-- param: factor = 10  # copies of a predominantly clinical article (paper: 10)
-- param: min_share = 0.5  # an article is clinical when its clinical share is > min_share
WITH article AS (
    SELECT article_id, avg(CAST(domain = $domain_clinical AS DOUBLE)) AS clinical_share
    FROM corpus
    GROUP BY article_id
)
SELECT c.id,
       CASE WHEN a.clinical_share > $min_share THEN $factor ELSE 1 END AS repeat
FROM corpus AS c
JOIN article AS a USING (article_id)
