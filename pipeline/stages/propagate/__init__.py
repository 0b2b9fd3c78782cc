"""The propagate stage: the trained student labels every paragraph (W/paragraphs -> W/labels).

    config.py      PropagateConfig: the flags, one field each (the workers receive it)
    stage.py       run: checks, full or delta, the pipeline, the summary
    transforms.py  StudentModelHandler (Beam's ModelHandler around classifiers.predict) and the graph
    delta.py       which labels a re-run keeps and which paragraphs it labels
"""
