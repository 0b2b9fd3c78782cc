"""Export: a curated subset as tokenized shards (OLMo, Megatron, datatrove) with mixture files and exact budgets.

    pmc-curate export --workdir W --subset NAME --tokenizer minilm --format olmo [--out DIR] [--materialize]

    config.py      ExportConfig (the CLI's flags, one-to-one)
    tokenizer.py   the target tokenizer by path or id, its name and SHA-256, its EOS
    plan.py        the subset is current; components (documents by repeat) and chunks (one worker task each)
    transforms.py  the Beam graph: join rows to the plan, tokenize once per document, write the shards
    card.py        the export's README.md (tokenizer, format, shards, tokens, mixture, how to load)
    stage.py       export(config), and run: the stage as `pmc-curate export` runs it

See docs/shards.md (the formats and the stage) and docs/curate.md (recipe to shards).
"""
