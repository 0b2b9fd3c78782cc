"""The dedup stage: exact, near and article-level duplicates and boilerplate (W/paragraphs -> W/duplicates).

    config.py      DedupConfig: the flags, one field each (the workers receive it)
    transforms.py  the per-batch, per-bucket and per-group steps, and the connected-components rounds
    stage.py       run: checks, the graph, the summary
"""
