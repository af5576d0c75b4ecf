"""The embedded PostgreSQL logs statements slower than CRYPTOBT_SLOW_QUERY_MS to its server.log."""

import psycopg

from cryptobt_pipelines.warehouse.servers import EmbeddedPostgres


def test_statements_above_the_threshold_land_in_the_server_log(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYPTOBT_SLOW_QUERY_MS", "150")
    server = EmbeddedPostgres(tmp_path / "home")
    try:
        server.ensure_running()
        with psycopg.connect(server.url(), autocommit=True) as conn:
            assert conn.execute("SHOW log_min_duration_statement").fetchone()[0] == "150ms"
            conn.execute("SELECT pg_sleep(0.3) AS slow_marker")
            conn.execute("SELECT 1 AS fast_marker")
        log = (server.pgdata / "server.log").read_text()
    finally:
        server.stop()

    (slow,) = [line for line in log.splitlines() if "slow_marker" in line]
    assert "duration:" in slow and float(slow.split("duration:")[1].split()[0]) >= 300
    assert "fast_marker" not in log
