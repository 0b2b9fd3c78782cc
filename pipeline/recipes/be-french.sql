-- BE-French: articles containing text in `language` (paragraph-level language ID) are repeated
-- `factor` times (whole articles, including their English paragraphs); others appear once.
-- param: factor = 10  # copies of an article containing French text (paper: 10)
-- param: language = "fr"  # ISO 639-1 code as written by the parse stage's language ID
-- param: min_paragraphs = 1  # paragraphs in `language` an article needs
WITH article AS (
    SELECT article_id, count_if(language = $language) AS n_lang
    FROM corpus
    GROUP BY article_id
)
SELECT c.id,
       CASE WHEN a.n_lang >= $min_paragraphs THEN $factor ELSE 1 END AS repeat
FROM corpus AS c
JOIN article AS a USING (article_id)
