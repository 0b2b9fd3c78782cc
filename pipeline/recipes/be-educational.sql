-- BE-Educational: drop paragraphs whose educational score is below min_score; no upsampling.
-- An article whose paragraphs all fall below the threshold disappears from the subset.
-- param: min_score = 3.0  # keep paragraphs with educational_score >= min_score (paper: 3)
SELECT id
FROM corpus
WHERE educational_score >= $min_score
