"""The annotate stage: the teacher LLM labels the sample (W/sample -> W/annotations, W/rejects/annotate-*).

    stage.py       Config (the flags), run: offline or remote teacher, preflight, the sample / gold / compare runs
    batch.py       --batch openai|jsonl and --batch-results: the batch path (library: pipeline/teacher/batch.py)
    transforms.py  the Beam pipeline: RunInference(TeacherModelHandler), routing, the completeness check
    handler.py     the teacher as Beam's ModelHandler (the client itself is pipeline/teacher/)
    gold.py        the hand-labelled gold set and agreement reports (--gold, --compare)
"""
