"""pmc-curate: PubMed Central Open Access -> labelled, filterable biomedical pretraining data."""

__version__ = "0.1.0"
