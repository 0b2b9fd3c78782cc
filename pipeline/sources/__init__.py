"""Where articles come from: the PMC Cloud layout (`pmc_cloud`, `pmc_cloud_beam`) and legacy file lists (`filelist`)."""

from __future__ import annotations

import argparse


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The parse stage's flags for choosing what to read (the PMC Cloud layout's, and filters for every input)."""
    parser.add_argument("--inventory", metavar="MANIFEST",
                        help="PMC Cloud layout: the inventory manifest.json to index by (default: the newest)")
    parser.add_argument("--license", metavar="CODES",
                        help="keep only these licenses: codes (CC BY, CC BY-NC-ND, CC0, TDM ...) or groups "
                             "(commercial, noncommercial, cc, tdm, other, none), comma separated")
    parser.add_argument("--include-manuscripts", action="store_true",
                        help="PMC Cloud layout: also parse author manuscripts (off: the paper used the OA subset)")
    parser.add_argument("--keep-retracted", action="store_true",
                        help="keep retracted articles and retraction notices (flagged is_retracted) instead of rejecting them")
    parser.add_argument("--pmcids", metavar="FILE|A-B",
                        help="only these PMCIDs: a file with one a line, or a range such as PMC100-PMC200")
    parser.add_argument("--update", action="store_true",
                        help="PMC Cloud layout: diff the newest inventory against W's previous run and parse only "
                             "new and changed versions, rewriting only the part files that held affected articles")
