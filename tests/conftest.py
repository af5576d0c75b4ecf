"""Real PostgreSQL and Redis for every test: the embedded servers by default, or CRYPTOBT_DATABASE_URL /
CRYPTOBT_REDIS_URL when set. Each test gets its own database, cloned from a migrated template in ~100 ms."""

import os
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql as pgsql

from cryptobt_pipelines.cache import BacktestCache
from cryptobt_pipelines.warehouse.database import create_database, drop_database, migrate, with_database
from cryptobt_pipelines.warehouse.servers import EmbeddedPostgres, EmbeddedRedis
from cryptobt_pipelines.warehouse.universe import sync_universe

EXTERNAL_DATABASE_URL = os.environ.get("CRYPTOBT_DATABASE_URL")
EXTERNAL_REDIS_URL = os.environ.get("CRYPTOBT_REDIS_URL")


@pytest.fixture(scope="session")
def test_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("cryptobt-home")
    os.environ["CRYPTOBT_HOME"] = str(home)  # nothing a test starts lands in the user's .cryptobt/
    return home


@pytest.fixture(scope="session")
def server_url(test_home) -> str:
    """A URL on the test server with rights to create databases."""
    if EXTERNAL_DATABASE_URL:
        yield EXTERNAL_DATABASE_URL
        return
    server = EmbeddedPostgres(test_home).ensure_running()
    yield server.url("postgres")
    server.stop()


@pytest.fixture(scope="session")
def template_database(server_url) -> str:
    name = f"cryptobt_template_{uuid.uuid4().hex[:8]}"
    create_database(server_url, name)
    url = with_database(server_url, name)
    migrate(url, timescale="off")  # the TimescaleDB path is tested on its own warehouses (test_rollups.py)
    sync_universe(url)
    # No sessions on the template, ever: TimescaleDB's launcher visits every database that accepts
    # connections, and CREATE DATABASE ... TEMPLATE fails while anyone is connected.
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(pgsql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(pgsql.Identifier(name)))
    yield name
    drop_database(server_url, name)


@pytest.fixture
def warehouse_url(server_url, template_database, monkeypatch) -> str:
    """A fresh migrated warehouse with the universe loaded; code that reads the environment sees it too."""
    name = f"cryptobt_test_{uuid.uuid4().hex[:8]}"
    create_database(server_url, name, template=template_database)
    url = with_database(server_url, name)
    monkeypatch.setenv("CRYPTOBT_DATABASE_URL", url)
    yield url
    drop_database(server_url, name)


@pytest.fixture(scope="session")
def redis_url(test_home) -> str:
    if EXTERNAL_REDIS_URL:
        yield EXTERNAL_REDIS_URL
        return
    server = EmbeddedRedis(test_home).ensure_running()
    yield server.url()
    server.stop()


@pytest.fixture
def backtest_cache(warehouse_url, redis_url) -> BacktestCache:
    """The backtest cache of this test's warehouse: a key namespace of its own in the test Redis (shared with
    other runs on db 15, so never flushed), cleared afterwards."""
    cache = BacktestCache.for_warehouse(warehouse_url, redis_url)
    yield cache
    cache.clear()
    cache.close()
