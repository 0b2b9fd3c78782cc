"""Duplicates and benchmark contamination: the pure functions behind `dedup` and `decontaminate`.

No Beam here (STYLE principle 3): the stages call these per element, per key or per bucket.

- `normalize`: the one text normalisation every rule hashes (lowercase, NFKC, punctuation to space,
  whitespace collapsed, digits kept unless asked).
- `exact`: paragraph and article fingerprints of normalised text.
- `ngrams`: hashes of word n-grams (any n) for a batch of normalised texts, vectorised with numpy.
- `minhash`: MinHash signatures of word 5-grams and their estimated Jaccard similarity.
- `lsh`: band keys of a signature and the LSH candidate curve.
- `components`: per-bucket confirmed edges, union-find, and the large-star / small-star steps that
  compute connected components in rounds of group-by-key.
- `groups`: exact and near groups of a small collection in memory, the reference for the stage.
- `keep`: the documented, deterministic order that picks a group's kept copy.
- `boilerplate`: sentences and groups repeated across many articles.
- `benchmarks`: reading user-provided MedQA, MedMCQA, PubMedQA and MMLU files.
- `contamination`: the benchmark n-gram index (a Beam side input) and matching against it.
"""
