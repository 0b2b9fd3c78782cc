"""Where articles come from: the PMC Cloud layout (`pmc_cloud`, `pmc_cloud_beam`) and legacy file lists (`filelist`)."""
