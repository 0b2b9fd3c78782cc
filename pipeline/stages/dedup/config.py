"""What one dedup run is configured with: the flags of `pmc-curate dedup`, one field each.

The defaults are the library's (pipeline.dedup.minhash.MinHashParams, boilerplate.BoilerplateParams);
docs/dedup.md says how to choose them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.options import option
from pipeline.dedup.boilerplate import BoilerplateParams
from pipeline.dedup.minhash import MinHashParams

_MH, _BP = MinHashParams(), BoilerplateParams()


@dataclass(frozen=True)
class DedupConfig:
    """Settings of one dedup run."""

    workdir: str = option("", fixed=True, help="work directory with paragraphs/ and articles/")
    near: bool = option(True, negative="--no-near", help="exact and article-level duplicates only (no MinHash)")
    shingle_words: int = option(_MH.shingle_words, help="words per MinHash shingle")
    bands: int = option(_MH.bands, help="LSH bands")
    rows: int = option(_MH.rows, help="MinHash slots per LSH band")
    threshold: float = option(_MH.threshold, help="estimated Jaccard similarity that confirms a candidate pair")
    digits_to_zero: bool = option(False, help="normalise every number to 0 (merges paragraphs differing only in figures)")
    seed: int = option(_MH.seed, help="MinHash seed")
    group_min_articles: int = option(_BP.group_min_articles, help="a group spanning this many articles is boilerplate")
    group_min_members: int = option(_BP.group_min_members, help="a group of this many paragraphs is boilerplate")
    sentence_min_words: int = option(_BP.sentence_min_words, help="shorter sentences are never boilerplate")
    sentence_min_articles: int = option(_BP.sentence_min_articles,
                                        help="a sentence found in this many articles is boilerplate")
    paragraph_share: float = option(_BP.paragraph_share,
                                    help="a paragraph with this share of its words in boilerplate sentences is flagged")
    cc_rounds: int = option(8, help="large-star/small-star rounds of the connected components (the run fails, "
                                    "saying so, if they were not enough)")
    labels: str = option("auto", choices=("auto", "labels", "labels_imported", "none"),
                         help="educational scores for the keep order (auto: labels, else labels_imported, else none)")
    batch_size: int = option(512, speed_only=True, help="paragraphs per signature batch")

    def minhash(self) -> MinHashParams:
        return MinHashParams(shingle_words=self.shingle_words, bands=self.bands, rows=self.rows,
                             threshold=self.threshold, seed=self.seed, digits_to_zero=self.digits_to_zero)  # fmt: skip

    def boilerplate(self) -> BoilerplateParams:
        return BoilerplateParams(group_min_articles=self.group_min_articles, group_min_members=self.group_min_members,
                                 sentence_min_words=self.sentence_min_words,
                                 sentence_min_articles=self.sentence_min_articles,
                                 paragraph_share=self.paragraph_share, digits_to_zero=self.digits_to_zero)  # fmt: skip
