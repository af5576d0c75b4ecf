"""Connections, named SQL from ``sql/``, and the migration runner."""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool

from cryptobt_pipelines import settings

MIGRATIONS_DIR = settings.SQL_DIR / "migrations"
MIGRATION_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+(\.timescale)?\.sql$")
# Any constant works: it only has to be the same in every process that migrates this database.
MIGRATION_LOCK_KEY = 7_311_001


def connect(url: str | None = None, **kwargs) -> psycopg.Connection:
    return psycopg.connect(url or settings.database_url(), **kwargs)


_pools: dict[tuple[int, str], ConnectionPool] = {}
_pools_lock = threading.Lock()


def _pool(url: str) -> ConnectionPool:
    # Keyed by pid too: a forked child (a Dagster step worker) must not share its parent's sockets.
    key = (os.getpid(), url)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = ConnectionPool(url, min_size=0, max_size=8, max_idle=120, open=True,
                                  check=ConnectionPool.check_connection, name=f"cryptobt-{len(_pools)}")
            _pools[key] = pool
    return pool


@contextmanager
def transaction(url: str | None = None) -> Iterator[psycopg.Connection]:
    """A pooled connection inside one transaction: committed when the block ends, rolled back if it raises.

    Small frequent work (an appended hour, a refresh) would otherwise spend a third of its time connecting.
    """
    with _pool(url or settings.database_url()).connection() as conn:
        yield conn


@atexit.register
def close_pools() -> None:
    with _pools_lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()


@cache
def query(name: str) -> str:
    """The text of ``sql/<name>.sql``."""
    path = settings.SQL_DIR / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"no SQL file {path}")
    return path.read_text()


def with_database(url: str, database: str) -> str:
    """The same server and credentials, another database (a URL stays a URL, a key=value DSN stays a DSN)."""
    if "://" not in url:
        return make_conninfo(url, dbname=database)
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(database)))


def dagster_storage_url(url: str, database: str = settings.DAGSTER_DB) -> str:
    """The Dagster instance's database beside the warehouse, as SQLAlchemy wants it: dagster-postgres with
    SQLAlchemy 2.1 would otherwise pick psycopg 3 for postgresql:// and fail on its NOTIFY statements."""
    if "://" not in url:
        raise ValueError("CRYPTOBT_DATABASE_URL must be a postgresql:// URL to derive the Dagster storage URL")
    parts = urlsplit(with_database(url, database))
    return urlunsplit(parts._replace(scheme="postgresql+psycopg2"))


def ensure_database(url: str, name: str) -> None:
    """Create database ``name`` on the server of ``url`` unless it exists."""
    if not database_exists(url, name):
        try:
            create_database(url, name)
        except psycopg.errors.DuplicateDatabase:
            pass  # created meanwhile by another process


def create_database(admin_url: str, name: str, template: str | None = None) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        statement = pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name))
        if template:
            statement += pgsql.SQL(" TEMPLATE {}").format(pgsql.Identifier(template))
        conn.execute(statement)


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name)))


def database_exists(admin_url: str, name: str) -> bool:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


# --- migrations -------------------------------------------------------------------------------------------
# A plain-SQL runner rather than a library: yoyo keys applied migrations by name only, so an edited
# migration would go unnoticed, and pyway reads its settings from the working directory. This one records
# a sha256 per file and refuses to go on when an applied file has changed.


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


PORTABLE, TIMESCALE = "portable", "timescale"
BACKEND_DECIDED_BY = "0003"  # the migration that makes market.prices a partitioned table or a hypertable


def migrations_on_disk(folder: Path = MIGRATIONS_DIR, backend: str = PORTABLE) -> list[Migration]:
    """The migrations to apply, in order. ``NNNN_name.timescale.sql`` replaces ``NNNN_name.sql`` on TimescaleDB."""
    chosen: dict[str, Migration] = {}
    for path in sorted(folder.glob("*.sql")):
        match = MIGRATION_FILE.match(path.name)
        if not match:
            raise MigrationError(f"migration file name {path.name!r} is not NNNN_lower_case_name[.timescale].sql")
        version, variant = match.group(1), match.group(2)
        if variant and backend != TIMESCALE:
            continue
        if version in chosen and not variant:
            raise MigrationError(f"two migrations share version {version} in {folder}")
        if version not in chosen or variant:
            chosen[version] = Migration(version, path.name, path.read_text())
    return [chosen[v] for v in sorted(chosen)]


def timescale_available(conn: psycopg.Connection) -> bool:
    """The extension is installed and preloaded (CREATE EXTENSION without preloading kills the session)."""
    return conn.execute(query("warehouse/timescale_available")).fetchone()[0]


def _backend(conn: psycopg.Connection, applied_names: list[str], mode: str) -> str:
    """The warehouse's backend: the one it was built with, else the one CRYPTOBT_TIMESCALE asks for."""
    if mode not in ("auto", "on", "off"):
        raise MigrationError(f"CRYPTOBT_TIMESCALE must be auto, on or off, not {mode!r}")
    built_with = TIMESCALE if any(".timescale." in n for n in applied_names) else None
    available = timescale_available(conn)
    wanted = TIMESCALE if mode == "on" or (mode == "auto" and available) else PORTABLE
    if built_with or any(n.startswith(f"{BACKEND_DECIDED_BY}_") for n in applied_names):
        built_with = built_with or PORTABLE
        if mode != "auto" and wanted != built_with:
            raise MigrationError(f"this warehouse was built for {built_with} PostgreSQL; CRYPTOBT_TIMESCALE={mode} "
                                 "cannot change that (start from an empty database)")
        return built_with
    if wanted == TIMESCALE and not available:
        raise MigrationError("CRYPTOBT_TIMESCALE=on but the timescaledb extension is not installed and preloaded "
                             "(shared_preload_libraries) on this server")
    return wanted


def migrate(url: str | None = None, folder: Path = MIGRATIONS_DIR, timescale: str | None = None) -> list[str]:
    """Apply pending migrations in order, each in its own transaction; returns the names applied.

    ``timescale`` is auto, on or off (default: CRYPTOBT_TIMESCALE, else auto); a built warehouse keeps its backend.
    """
    mode = timescale or os.environ.get("CRYPTOBT_TIMESCALE", "auto")
    applied_now = []
    with connect(url, autocommit=True) as conn:
        conn.execute("SET client_min_messages = warning")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS public.cryptobt_migrations ("
            " version text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        # Several Dagster run workers may start at once: one migrates, the others wait and find nothing to do.
        conn.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_KEY])
        try:
            applied = {
                version: (name, checksum)
                for version, name, checksum in conn.execute(
                    "SELECT version, name, checksum FROM public.cryptobt_migrations ORDER BY version"
                )
            }
            wanted = migrations_on_disk(folder, _backend(conn, [n for n, _ in applied.values()], mode))
            on_disk = {m.version for m in wanted}
            for version, (name, _) in applied.items():
                if version not in on_disk:
                    raise MigrationError(f"migration {name} is applied in the database but missing from {folder}")
            for migration in wanted:
                if migration.version in applied:
                    name, checksum = applied[migration.version]
                    if name != migration.name or checksum != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.name} changed after it was applied (recorded {name} sha256 "
                            f"{checksum[:12]}, file sha256 {migration.checksum[:12]}): add a new migration instead"
                        )
                    continue
                with conn.transaction():
                    conn.execute(migration.sql)
                    conn.execute(
                        "INSERT INTO public.cryptobt_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        [migration.version, migration.name, migration.checksum],
                    )
                applied_now.append(migration.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_KEY])
    return applied_now


def backend_of(conn: psycopg.Connection) -> str:
    """How the rollups are kept: native continuous aggregates (a view) or portable tables."""
    return TIMESCALE if conn.execute(query("warehouse/rollup_relkind")).fetchone()[0] == "v" else PORTABLE
