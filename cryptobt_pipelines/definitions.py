"""The code location: every Dagster object under defs/, found by folder (domains: ingest, quality, ...)."""

import dagster as dg

from cryptobt_pipelines.settings import PROJECT_ROOT


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(project_root=PROJECT_ROOT)
