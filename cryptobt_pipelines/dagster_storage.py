"""The Dagster instance's storage (dagster.yaml): dagster-postgres's, with the event log on kept connections.

dagster-postgres opens a new database connection for each part of an event write (SQLAlchemy ``NullPool``),
and an asset event takes three (the event, a table check nested in the asset index's transaction, the index):
the 263 planned events of the nightly backtest run took 3-9 s to write, 0.6-3 s on kept connections
(bench/engine.py, the run's creation). Here the event log keeps two connections per process (the nested check
needs the second), each pinged before use, so a server that ended it costs a reconnect, not a failed write;
writers beyond two open and close their own, as before. Runs and schedules stay on Dagster's own storages: a
few statements per run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage, PostgresEventLogStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

# A long-lived process (daemon, code server) replaces its kept connection after an hour.
POOL_RECYCLE_SECONDS = 3600


class PooledPostgresEventLogStorage(PostgresEventLogStorage):
    """PostgresEventLogStorage keeping its connections instead of opening one per statement."""

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True,
                 inst_data: ConfigurableClassData | None = None, token_provider=None):
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        self._engine.dispose()
        self._engine = create_pg_engine(
            self.postgres_url, self._token_provider, isolation_level="AUTOCOMMIT", pool_size=2, max_overflow=-1,
            pool_pre_ping=True, pool_recycle=POOL_RECYCLE_SECONDS)

    def dispose(self) -> None:
        super().dispose()
        self._engine.dispose()


class PooledPostgresStorage(DagsterPostgresStorage):
    """dagster-postgres's storage (same config, same tables) with PooledPostgresEventLogStorage."""

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True,
                 inst_data: ConfigurableClassData | None = None, token_provider=None):
        super().__init__(postgres_url, should_autocreate_tables, inst_data, token_provider)
        self._event_log_storage = PooledPostgresEventLogStorage(postgres_url, should_autocreate_tables,
                                                                token_provider=token_provider)

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None,
                          config_value: Mapping[str, Any]) -> PooledPostgresStorage:
        return cls(postgres_url=pg_url_from_config(config_value),
                   should_autocreate_tables=config_value.get("should_autocreate_tables", True),
                   inst_data=inst_data, token_provider=get_token_provider_from_config(config_value))
