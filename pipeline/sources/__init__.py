"""Where articles come from, as pure functions (no Beam): the PMC Cloud layout of s3://pmc-oa-opendata
and its mirrors (`pmc_cloud`: inventories, version metadata, which version to parse) and the legacy bulk
packages' file lists (`filelist`). The parse stage reads through them (pipeline/stages/parse/)."""
