"""The one place that knows about filesystems: local paths, `s3://` and `gs://`.

Every stage reaches its work directory through a `Location`: a path-like value that is either a local
path or an object-store URL, with the few operations stages need (join, list, glob, read, write,
replace, remove). Non-Beam code (DuckDB, PyTorch, pyarrow, the flow's markers and lock) goes through
fsspec (s3fs, gcsfs); Beam stages hand `str(location)` to Beam's own FileSystems and sinks, which
read the same settings from the standard environment and from Beam's `--s3_*` flags.

Settings, given once, reach every stage:
- S3: `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
  `AWS_DEFAULT_REGION` (boto's own environment), or Beam's `--s3_endpoint_url`, `--s3_access_key_id`,
  `--s3_secret_access_key`, `--s3_session_token`, `--s3_region_name`, `--s3_verify`, `--s3_disable_ssl`
  flags on any command (`configure(argv)` reads them; they still go on to Beam);
- GCS: Google application-default credentials, or `STORAGE_EMULATOR_HOST` for an emulator (then our
  access is anonymous; Beam's own GCS client still searches for credentials first, ~18-28 s per
  process on a machine that has none: Beam 2.77 has no switch for that).

Public buckets (`PUBLIC_S3_BUCKETS`: NCBI's `pmc-oa-opendata`, plus any named in `PMC_CURATE_ANON_BUCKETS`,
comma separated) are read anonymously (unsigned requests, us-east-1 unless a region is set), whatever
credentials are configured: no account is needed to read PMC-OA.

Secrets given this way are registered with `pipeline.secrets`, so nothing we write or log shows them.

    settings.py   the settings, the fsspec filesystem of a URL, DuckDB connections that read them
    location.py   Location: join, list, glob, read, write (atomic), exclusive create, remove, upload
    ops.py        fingerprints, local copies, access checks, Parquet files
    publishing.py replacing a folder whole: built beside it, then an atomic swap or a journaled publish
"""

from pipeline.core.storage.location import Location, as_location, expand
from pipeline.core.storage.ops import (
    check_access,
    fingerprint,
    local_copy,
    read_parquet,
    read_parquet_metadata,
    unreachable,
    write_parquet,
)
from pipeline.core.storage.publishing import (
    PUBLISHING,
    finish_publish,
    local_staging,
    publish,
    publish_folder,
    replacing,
)
from pipeline.core.storage.settings import (
    ACCEPTED,
    PUBLIC_S3_BUCKETS,
    REMOTE_SCHEMES,
    S3_BLOCK_SIZE,
    S3_FLAGS,
    SECRET_ENV,
    SECRET_FLAGS,
    configure,
    duckdb_connect,
    filesystem,
    is_anonymous,
    is_remote,
    register_env_secrets,
    reset,
    scheme,
    storage_timeout_s,
    strip_flags,
)

__all__ = [
    "ACCEPTED", "PUBLISHING", "PUBLIC_S3_BUCKETS", "REMOTE_SCHEMES", "S3_BLOCK_SIZE", "S3_FLAGS", "SECRET_ENV", "SECRET_FLAGS",
    "Location", "as_location", "check_access", "configure", "duckdb_connect", "expand", "filesystem",
    "finish_publish", "fingerprint", "is_anonymous", "is_remote", "local_copy", "local_staging", "publish", "publish_folder",
    "read_parquet", "read_parquet_metadata", "replacing",
    "register_env_secrets", "reset", "scheme", "storage_timeout_s", "strip_flags", "unreachable", "write_parquet",
]  # fmt: skip
