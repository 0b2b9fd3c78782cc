"""The parse stage: PMC-OA JATS XML -> W/articles, W/paragraphs, W/versions, W/tombstones, W/rejects.

    stage.py       Config (the flags), build_transform, run: the stage as `pmc-curate parse` runs it
    transforms.py  files and .tar.gz packages: read, parse (pipeline.jats), one copy per PMCID, write
    read_cloud.py  the PMC Cloud layout (s3://pmc-oa-opendata and mirrors): index, choose, fetch, parse
    update.py      `--update`: re-read only the versions the newest inventory changed
    update_journal.py  where an update stands; a killed one is finished, not repeated (publish: core/commit.py)
    summary.py     the counts printed and recorded, read back from the written tables
"""
