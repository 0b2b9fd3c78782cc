"""The shared ground every other part stands on, and which imports nothing above it.

    records.py       one dataclass per arrow of the data flow; Parquet schemas derive from them
    labels.py        the label schema, defined once (classes, heads, SQL bindings, reply schema)
    errors.py        errors named by what the caller should do, and the reject reasons
    workdir.py       the work directory's layout: every table, its record type and its folder
    storage/         the only place that knows filesystems: local, s3://, gs://, Beam's included
    tables.py        the one way to read a table: DuckDB views, row counts, rejects by reason
    commit.py        keyed changes published into part files, one whole-file write each (parse --update)
    label_tables.py  the check of a labels table at the door (curate, report, import-labels)
    agreement.py     agreement metrics between two labellings (teacher vs gold, teacher vs teacher)
    secrets.py       values that never reach a log, marker, manifest or report
    options.py       typed stage configurations: one dataclass = the flags = the YAML keys
"""
