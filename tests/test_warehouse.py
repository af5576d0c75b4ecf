"""Migrations, the embedded servers and the universe."""

import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest
import redis

from cryptobt_pipelines.warehouse.database import (
    MigrationError,
    create_database,
    dagster_storage_url,
    drop_database,
    migrate,
    with_database,
)
from cryptobt_pipelines.warehouse.servers import (
    EmbeddedPostgres,
    EmbeddedRedis,
    postgres_bin_dir,
    redis_server_binary,
)
from cryptobt_pipelines.warehouse.universe import read_universe, sync_universe


@pytest.fixture
def empty_database(server_url):
    name = "cryptobt_migrations_test"
    drop_database(server_url, name)
    create_database(server_url, name)
    yield with_database(server_url, name)
    drop_database(server_url, name)


def write_migrations(folder: Path, *bodies: str) -> None:
    folder.mkdir(exist_ok=True)
    for number, body in enumerate(bodies, start=1):
        (folder / f"{number:04d}_step_{number}.sql").write_text(body)


def test_migrations_apply_in_order_once(empty_database, tmp_path):
    write_migrations(tmp_path / "m", "CREATE TABLE a (x int);", "ALTER TABLE a ADD COLUMN y int;")

    assert migrate(empty_database, tmp_path / "m") == ["0001_step_1.sql", "0002_step_2.sql"]
    assert migrate(empty_database, tmp_path / "m") == []
    with psycopg.connect(empty_database) as conn:
        assert conn.execute("SELECT version, name FROM public.cryptobt_migrations ORDER BY 1").fetchall() == [
            ("0001", "0001_step_1.sql"), ("0002", "0002_step_2.sql")
        ]


def test_a_changed_applied_migration_is_an_error_not_a_rerun(empty_database, tmp_path):
    write_migrations(tmp_path / "m", "CREATE TABLE a (x int);")
    migrate(empty_database, tmp_path / "m")
    (tmp_path / "m" / "0001_step_1.sql").write_text("CREATE TABLE a (x bigint);")

    with pytest.raises(MigrationError, match="0001_step_1.sql changed after it was applied"):
        migrate(empty_database, tmp_path / "m")


def test_a_failing_migration_applies_nothing_of_itself(empty_database, tmp_path):
    write_migrations(tmp_path / "m", "CREATE TABLE a (x int);", "CREATE TABLE b (x int); SELECT 1/0;")

    with pytest.raises(psycopg.errors.DivisionByZero):
        migrate(empty_database, tmp_path / "m")
    with psycopg.connect(empty_database) as conn:
        assert conn.execute("SELECT to_regclass('b') IS NULL, to_regclass('a') IS NOT NULL").fetchone() == (True, True)
        assert conn.execute("SELECT count(*) FROM public.cryptobt_migrations").fetchone() == (1,)


def test_badly_named_or_missing_migrations_are_errors(empty_database, tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "1_Create.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="is not NNNN_lower_case_name"):
        migrate(empty_database, tmp_path / "bad")

    write_migrations(tmp_path / "m", "SELECT 1;", "SELECT 2;")
    migrate(empty_database, tmp_path / "m")
    (tmp_path / "m" / "0002_step_2.sql").unlink()
    with pytest.raises(MigrationError, match="0002_step_2.sql is applied in the database but missing"):
        migrate(empty_database, tmp_path / "m")


def test_the_project_schema_has_the_contract_names(warehouse_url):
    with psycopg.connect(warehouse_url) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_schema IN ('market', 'serving', 'backtest')")}
        schemas = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}
    assert {"market", "serving", "backtest"} <= schemas
    assert {"market.cryptos", "market.prices", "market.rejected_prices", "market.invalidations", "market.loads"} <= tables


def test_the_universe_has_263_real_cryptos_and_syncs_idempotently(warehouse_url, tmp_path):
    universe = read_universe()
    assert len(universe) == 263 and universe["symbol"].is_unique

    again = sync_universe(warehouse_url)
    assert (again.added, again.changed, again.retired) == (0, 0, 0)

    smaller = tmp_path / "cryptos.csv"
    universe.head(10).to_csv(smaller, index=False)
    shrunk = sync_universe(warehouse_url, smaller)
    assert shrunk.retired == 253
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("SELECT count(*) FILTER (WHERE in_universe), count(*) FROM market.cryptos").fetchone() == (10, 263)


def test_a_broken_universe_file_is_refused_with_its_reason(tmp_path):
    path = tmp_path / "cryptos.csv"
    path.write_text("crypto_id,symbol,name,coingecko_id\n1,BTC,Bitcoin,bitcoin\n2,BTC,Bitcoin again,x\n")
    with pytest.raises(ValueError, match="duplicate symbol values \\['BTC'\\]"):
        read_universe(path)


def test_url_helpers_keep_the_server_and_switch_the_database():
    assert with_database("postgresql://u@127.0.0.1:5432/a", "b") == "postgresql://u@127.0.0.1:5432/b"
    assert dagster_storage_url("postgresql://postgres@/cryptobt?host=/tmp/x/run") == (
        "postgresql+psycopg2://postgres@/dagster?host=/tmp/x/run"
    )


# --- embedded servers --------------------------------------------------------------------------------------


def system_postgres_bin() -> Path | None:
    """PostgreSQL binaries from PATH or the distribution, as used when the pgserver wheel is missing."""
    candidates = [Path(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)]
    which = shutil.which("initdb")
    if which:
        candidates.insert(0, Path(which).parent)
    return next((c for c in candidates if (c / "initdb").exists() and (c / "pg_ctl").exists()), None)


@pytest.mark.parametrize("source", ["wheel", "path"])
def test_embedded_postgres_starts_is_reused_and_stops(tmp_path, source):
    bin_dir = postgres_bin_dir() if source == "wheel" else system_postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL binaries on PATH")
    server = EmbeddedPostgres(tmp_path / "home", bin_dir=bin_dir)
    try:
        server.ensure_running()
        assert server.is_running()
        with psycopg.connect(server.url()) as conn:
            assert conn.execute("SELECT current_database(), current_setting('jit')").fetchone() == ("cryptobt", "off")
            assert int(conn.execute("SHOW log_min_duration_statement").fetchone()[0].rstrip("ms")) > 0
        server.ensure_running()  # already up: reused, not restarted
        assert server.status()["running"]
    finally:
        server.stop()
    assert not server.is_running()


@pytest.mark.parametrize("source", ["wheel", "path"])
def test_embedded_redis_starts_answers_and_stops(tmp_path, source):
    binary = redis_server_binary() if source == "wheel" else shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server on PATH")
    server = EmbeddedRedis(tmp_path / "home", binary=Path(binary))
    try:
        client = redis.Redis.from_url(server.ensure_running().url())
        client.set("k", "v")
        assert client.get("k") == b"v"
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
    finally:
        server.stop()
    assert not server.is_running()


def test_cli_services_env_prints_export_lines(test_home, monkeypatch):
    monkeypatch.setenv("CRYPTOBT_DATABASE_URL", "postgresql://u@127.0.0.1:5/db")
    monkeypatch.setenv("CRYPTOBT_REDIS_URL", "redis://127.0.0.1:6379/3")
    monkeypatch.setattr("cryptobt_pipelines.warehouse.database.ensure_database", lambda url, name: None)
    from click.testing import CliRunner

    from cryptobt_pipelines.cli import main

    result = CliRunner().invoke(main, ["services", "env"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "export CRYPTOBT_DATABASE_URL=postgresql://u@127.0.0.1:5/db",
        "export CRYPTOBT_REDIS_URL=redis://127.0.0.1:6379/3",
        f"export DAGSTER_HOME={test_home / 'dagster'}",
        "export CRYPTOBT_DAGSTER_STORAGE_URL=postgresql+psycopg2://u@127.0.0.1:5/dagster",
    ]


def test_services_commands_run_in_a_fresh_process(tmp_path):
    """`cryptobt services up/status/env/down` as a user types them, with no URLs set."""
    env = {"PATH": "/usr/bin:/bin", "CRYPTOBT_HOME": str(tmp_path / "home"), "HOME": str(tmp_path)}
    cryptobt = str(Path(__import__("sys").executable).parent / "cryptobt")

    def run(*args):
        return subprocess.run([cryptobt, "services", *args], env=env, capture_output=True, text=True, timeout=120)

    try:
        up = run("up")
        assert up.returncode == 0, up.stderr
        status = run("status").stdout
        assert "postgres (embedded): PostgreSQL" in status and "redis    (embedded): up" in status
        exports = run("env").stdout
        assert f"export DAGSTER_HOME={tmp_path / 'home' / 'dagster'}" in exports
    finally:
        down = run("down")
    assert down.returncode == 0 and "stopped" in run("status").stdout


def test_embedded_postgres_recovers_when_its_socket_vanished(tmp_path):
    server = EmbeddedPostgres(tmp_path / "home").ensure_running()
    try:
        (server.socket_dir / ".s.PGSQL.5432").unlink()  # as a server dying on a deleted data folder does
        assert not server.is_running()
        server.ensure_running()
        with psycopg.connect(server.url()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()
