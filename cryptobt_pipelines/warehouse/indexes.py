"""Partial indexes over a recent window (the seed's "last 90 days"), rolled forward on a schedule.

A partial index only serves a query when the planner can prove the query's predicate implies the index's,
which needs a constant: `WHERE ts >= now() - '90 days'` in an index definition is not allowed, and a fixed
cutoff goes stale. So each roll builds the index for the new cutoff (CONCURRENTLY: readers and loads go on)
and then drops the previous one. Queries pass their cutoff as a value: `WHERE ts >= %(since)s`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from psycopg import sql as pgsql

from cryptobt_pipelines.warehouse.database import connect, query

RECENT_WINDOW = timedelta(days=90)


@dataclass
class IndexRoll:
    cutoff: datetime
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def roll_recent_indexes(url: str | None = None, window: timedelta = RECENT_WINDOW,
                        now: datetime | None = None) -> IndexRoll:
    now = now or datetime.now(UTC)
    cutoff = (now - window).replace(hour=0, minute=0, second=0, microsecond=0)
    roll = IndexRoll(cutoff)
    suffix = cutoff.strftime("%Y%m%d")
    # CREATE/DROP INDEX CONCURRENTLY refuse to run inside a transaction.
    with connect(url, autocommit=True) as conn:
        targets = conn.execute(query("indexes/recent_index_targets"), {"cutoff": cutoff}).fetchall()
        existing = conn.execute(query("indexes/recent_indexes")).fetchall()
        wanted = {f"{prefix}_{suffix}" for _, _, prefix, _ in targets}
        for name, _, valid in existing:
            if name in wanted and not valid:  # a concurrent build that died half-way: build it again
                _drop(conn, name, concurrently=True)
        for table, time_column, prefix, concurrently in targets:
            name = f"{prefix}_{suffix}"
            conn.execute(pgsql.SQL(query("indexes/create_recent_index")).format(
                concurrently=pgsql.SQL("CONCURRENTLY" if concurrently else ""),
                index=pgsql.Identifier(name),
                table=pgsql.SQL(table),
                time_column=pgsql.Identifier(time_column),
                cutoff=pgsql.Literal(cutoff),
            ))
            if name not in {n for n, _, _ in existing}:
                roll.created.append(name)
        for name, _, _ in existing:
            if name not in wanted:
                _drop(conn, name, concurrently=True)
                roll.dropped.append(name)
    return roll


def _drop(conn, name: str, concurrently: bool) -> None:
    conn.execute(pgsql.SQL(query("indexes/drop_index")).format(
        concurrently=pgsql.SQL("CONCURRENTLY" if concurrently else ""),
        index=pgsql.Identifier("market", name),
    ))
