-- BE-All: the educational filter, the clinical, clinical-case and French upsampling, and a
-- metadata prefix on each paragraph's text (Biomed-Enriched section 4; the paper does not publish
-- the factors or the prefix, these are ours, see docs/curate.md).
-- Article flags are computed on all of the article's labelled paragraphs (what the article is),
-- the filter then drops the low-scoring paragraphs. An article matching several upsampling rules
-- gets the largest factor, not the product (10 x 10 x 10 would swamp the subset).
-- The prefix is printf(prefix_format, document_type, domain, rounded educational_score).
-- param: min_score = 3.0  # keep paragraphs with educational_score >= min_score
-- param: clinical_factor = 10  # copies of a predominantly clinical article
-- param: clinical_share = 0.5  # clinical when the clinical-domain share is > clinical_share
-- param: clinicalcase_factor = 10  # copies of an article with >= 1 clinical-case paragraph
-- param: french_factor = 10  # copies of an article containing French text
-- param: language = "fr"  # language code of the upsampled language
-- param: prefix_format = "<type: %s | domain: %s | educational score: %d>\n"  # printf format
WITH article AS (
    SELECT article_id,
           avg(CAST(domain = $domain_clinical AS DOUBLE)) AS clinical_share,
           count_if(document_type = $type_clinical_case) AS n_cases,
           count_if(language = $language) AS n_lang
    FROM corpus
    GROUP BY article_id
)
SELECT c.id,
       greatest(
           1,
           CASE WHEN a.clinical_share > $clinical_share THEN $clinical_factor ELSE 1 END,
           CASE WHEN a.n_cases >= 1 THEN $clinicalcase_factor ELSE 1 END,
           CASE WHEN a.n_lang >= 1 THEN $french_factor ELSE 1 END
       ) AS repeat,
       printf($prefix_format, c.document_type, c.domain, CAST(round(c.educational_score) AS INTEGER)) AS prefix
FROM corpus AS c
JOIN article AS a USING (article_id)
WHERE c.educational_score >= $min_score
