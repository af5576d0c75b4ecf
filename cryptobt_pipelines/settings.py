"""Where things live: every environment variable the project reads, in one place."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = PROJECT_ROOT / "sql"
ASSETS_DIR = PROJECT_ROOT / "assets"

WAREHOUSE_DB = "cryptobt"
DAGSTER_DB = "dagster"


def cryptobt_home() -> Path:
    return Path(os.environ.get("CRYPTOBT_HOME", ".cryptobt")).resolve()


def landing_dir() -> Path:
    return Path(os.environ.get("CRYPTOBT_LANDING", cryptobt_home() / "landing")).resolve()


def dagster_home() -> Path:
    return Path(os.environ.get("DAGSTER_HOME", cryptobt_home() / "dagster")).resolve()


def external_database_url() -> str | None:
    return os.environ.get("CRYPTOBT_DATABASE_URL") or None


def external_redis_url() -> str | None:
    return os.environ.get("CRYPTOBT_REDIS_URL") or None


def database_url() -> str:
    """The warehouse URL: the external server when configured, else the embedded one (started if needed)."""
    url = external_database_url()
    if url:
        return url
    from cryptobt_pipelines.warehouse.servers import EmbeddedPostgres

    return EmbeddedPostgres(cryptobt_home()).ensure_running().url(WAREHOUSE_DB)


def redis_url() -> str:
    url = external_redis_url()
    if url:
        return url
    from cryptobt_pipelines.warehouse.servers import EmbeddedRedis

    return EmbeddedRedis(cryptobt_home()).ensure_running().url()
