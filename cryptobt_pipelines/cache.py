"""The Redis cache of backtest results: an accelerator in front of PostgreSQL, never a source of truth.

Key layout (every key of one warehouse starts with ``cryptobt:<namespace>:``, the namespace being a hash of
the warehouse's identity: the cluster's system identifier and the database's oid; so warehouses sharing one
Redis, such as the test databases of a CI run on db 15, never meet):

    <prefix>:r:<crypto_id>:<data_version>:<strategy>:<params_hash>:<start>:<end>:<interval>
                           one result (JSON, zlib above 1 KiB), TTL 24 h
    <prefix>:i:<crypto_id>  sorted set of that crypto's entry keys scored by data version (lives as long as
                           its newest entry): what an invalidation deletes
    <prefix>:versions      hash crypto_id -> the newest data version Redis has been told of
    <prefix>:stats         hash of counters: hits and misses since ``since`` (a window the cache asset resets),
                           versions_bumped and entries_invalidated since the namespace began

Why a stale result is never served, whatever the sensors do: a reader builds its keys from
``market.cryptos.data_version``, which every load that changes a crypto's bars bumps in its own transaction.
From the load's commit on, readers ask for keys of the new version and the old entries are unreachable. The
one rule for writers: read the versions before the bars (or in the same REPEATABLE READ snapshot), so a
result is never filed under a version newer than its data.

What the version record in Redis is for: memory and guarding, not correctness. After an ingest the cache
asset (requested by the invalidation sensor, which compares the warehouse's versions with this record)
advances the record and deletes the entries of superseded versions at once, counting them. A writer whose
version is older than the record (it read the warehouse before an ingest the record already knows) is
refused atomically: its entry could never be read and would only hold memory for 24 h. A record newer than
the warehouse (a warehouse restored in place to an earlier point, which keeps its identity) drops every entry
of that crypto; until that runs, such a restore should ``clear()`` the cache. A missing record
(Redis restarted or evicted it) counts as version 0: writes go through, and the next advance cleans up.

With Redis down or unreachable nothing fails: gets are misses, puts are dropped, one warning is logged per
outage, and calls skip Redis entirely (a circuit breaker) until ``retry_after`` seconds have passed; the first
call after that tries again and, when it succeeds, the cache is back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import psycopg
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cryptobt_pipelines import settings
from cryptobt_pipelines.warehouse.database import connect, query
from cryptobt_pipelines.warehouse.load import interval_name

log = logging.getLogger(__name__)

TTL_SECONDS = 24 * 3600
STATS_TTL_SECONDS = 7 * 24 * 3600  # an abandoned namespace's counters go eventually
COMPRESS_ABOVE_BYTES = 1024
KEYS_PER_CALL = 1000  # Lua's unpack() stops near 8,000 values; keep each script call short for other clients
CRYPTOS_PER_ADVANCE = 100
STRATEGY_NAME = re.compile(r"^[a-z0-9_]+$")
T = TypeVar("T")


# --- keys -----------------------------------------------------------------------------------------------


def params_hash(params: Mapping[str, Any]) -> str:
    """16 hex digits of sha256 over the canonical JSON of a parameter set (keys sorted).

    Pass the *resolved* set (``Strategy.resolve``: defaults filled in, values in their canonical types) so
    that ``{}`` and the defaults spelled out share one entry; ``20`` and ``20.0`` hash differently.
    """
    canonical = json.dumps(dict(params), sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _window_bound(name: str, value: date | datetime) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{name}={value!r}: a datetime in a cache key must carry a time zone")
        return value.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    if isinstance(value, date):
        return value.strftime("%Y%m%d")
    raise TypeError(f"{name}={value!r}: expected a date or a time-zone-aware datetime")


@dataclass(frozen=True)
class BacktestKey:
    """One cache entry: a crypto at a data version, a strategy with one parameter set, a window, an interval."""

    crypto_id: int
    data_version: int
    strategy: str
    params_hash: str
    start: str
    end: str
    interval: str

    def redis_key(self, prefix: str) -> str:
        return (f"{prefix}:r:{self.crypto_id}:{self.data_version}:{self.strategy}:{self.params_hash}:"
                f"{self.start}:{self.end}:{self.interval}")


def backtest_key(crypto_id: int, data_version: int, strategy: str, params: Mapping[str, Any],
                 start: date | datetime, end: date | datetime, bar_seconds: int) -> BacktestKey:
    """The key of one result. ``data_version`` comes from ``read_data_versions``; dates and datetimes are
    different windows (a date stays a day, a datetime an instant, in UTC)."""
    if not STRATEGY_NAME.match(strategy):
        raise ValueError(f"strategy={strategy!r}: expected a catalog name (lower case, digits, underscores)")
    if isinstance(bar_seconds, bool) or not isinstance(bar_seconds, int) or bar_seconds <= 0:
        raise ValueError(f"bar_seconds={bar_seconds!r}: expected a positive whole number of seconds")
    return BacktestKey(int(crypto_id), int(data_version), strategy, params_hash(params),
                       _window_bound("start", start), _window_bound("end", end), interval_name(bar_seconds))


def backtest_keys(versions: Mapping[int, int], strategy: str, params: Mapping[str, Any],
                  start: date | datetime, end: date | datetime, bar_seconds: int) -> dict[int, BacktestKey]:
    """One key per crypto of ``versions`` (crypto_id -> data version) for the same request."""
    return {crypto_id: backtest_key(crypto_id, version, strategy, params, start, end, bar_seconds)
            for crypto_id, version in versions.items()}


# --- the warehouse side -----------------------------------------------------------------------------------


def read_data_versions(conn: psycopg.Connection, crypto_ids: Iterable[int] | None = None) -> dict[int, int]:
    """crypto_id -> data_version of the cryptos asked for (all when None), in one query. Unknown ids are
    absent. Call it before reading the bars, in the same transaction when it is REPEATABLE READ."""
    ids = None if crypto_ids is None else [int(c) for c in crypto_ids]
    return dict(conn.execute(query("cache/data_versions"), {"crypto_ids": ids}).fetchall())


def warehouse_namespace(conn: psycopg.Connection) -> str:
    """12 hex digits naming this warehouse (cluster and database) in a shared Redis."""
    system_identifier, database_oid = conn.execute(query("cache/warehouse_identity")).fetchone()
    return hashlib.sha256(f"{system_identifier}:{database_oid}".encode()).hexdigest()[:12]


# --- values ---------------------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot cache a value of type {type(value).__name__}: {value!r}")


def encode_result(result: Mapping[str, Any]) -> bytes:
    """Compact JSON (``Infinity`` and ``NaN`` kept: profit_factor can be infinite), zlib above 1 KiB."""
    raw = json.dumps(result, separators=(",", ":"), default=_json_default).encode()
    return zlib.compress(raw, 6) if len(raw) > COMPRESS_ABOVE_BYTES else raw


def decode_result(value: bytes) -> dict[str, Any]:
    # A JSON object starts with "{"; a zlib stream never does (its first byte is 0x78).
    return json.loads(value if value[:1] == b"{" else zlib.decompress(value))


# --- Redis scripts ---------------------------------------------------------------------------------------
# Each runs atomically in Redis: one round trip, and no writer can slip between a check and its write.

GET_MANY = """
-- KEYS[1] stats hash, KEYS[2..] entry keys; ARGV[1] now (unix seconds), ARGV[2] stats TTL
local values = redis.call('MGET', unpack(KEYS, 2))
local hits = 0
for i = 1, #values do
    if values[i] then hits = hits + 1 end
end
redis.call('HINCRBY', KEYS[1], 'hits', hits)
redis.call('HINCRBY', KEYS[1], 'misses', #values - hits)
redis.call('HSETNX', KEYS[1], 'since', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return values
"""

PUT_MANY = """
-- KEYS[1] versions hash, then per entry: entry key, index key
-- ARGV[1] TTL, then per entry: crypto_id, data version, value
local ttl = ARGV[1]
local written, refused = 0, 0
for i = 0, (#KEYS - 1) / 2 - 1 do
    local entry, index = KEYS[2 + 2 * i], KEYS[3 + 2 * i]
    local version = tonumber(ARGV[3 + 3 * i])
    local known = tonumber(redis.call('HGET', KEYS[1], ARGV[2 + 3 * i]) or '0')
    if known > version then
        refused = refused + 1  -- read before an ingest Redis already knows of: never readable
    else
        redis.call('SET', entry, ARGV[4 + 3 * i], 'EX', ttl)
        redis.call('ZADD', index, version, entry)
        redis.call('EXPIRE', index, ttl)
        written = written + 1
    end
end
return {written, refused}
"""

ADVANCE_VERSIONS = """
-- KEYS[1] versions hash, KEYS[2] stats hash, then one index key per crypto
-- ARGV[1] stats TTL, then per crypto: crypto_id, the warehouse's data version
local bumped, recorded, reset, deleted = 0, 0, 0, 0
for i = 1, #KEYS - 2 do
    local index = KEYS[2 + i]
    local crypto, version = ARGV[2 * i], tonumber(ARGV[2 * i + 1])
    local known = tonumber(redis.call('HGET', KEYS[1], crypto) or '-1')
    local stale
    if known > version then
        -- Redis knows a newer version than the warehouse holds (a restored warehouse): nothing of it holds.
        stale = redis.call('ZRANGE', index, 0, -1)
        reset = reset + 1
    else
        stale = redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. version)
        if known >= 0 and known < version then bumped = bumped + 1 end
        if known < 0 and version > 0 then recorded = recorded + 1 end
    end
    if known ~= version and (known >= 0 or version > 0) then
        redis.call('HSET', KEYS[1], crypto, version)
    end
    for j = 1, #stale, 500 do
        deleted = deleted + redis.call('UNLINK', unpack(stale, j, math.min(j + 499, #stale)))
    end
    if known > version then
        redis.call('DEL', index)
    else
        redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. version)
    end
end
redis.call('HINCRBY', KEYS[2], 'versions_bumped', bumped)
redis.call('HINCRBY', KEYS[2], 'entries_invalidated', deleted)
redis.call('EXPIRE', KEYS[2], ARGV[1])
return {bumped, recorded, reset, deleted}
"""


# --- reports --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PutReport:
    written: int
    refused_stale: int  # their data version was older than Redis's record
    dropped: int  # Redis unreachable


@dataclass(frozen=True)
class VersionAdvance:
    versions_bumped: int  # records moved to a newer warehouse version
    versions_recorded: int  # cryptos Redis had no record of (first run, or after a Redis restart)
    versions_reset: int  # records newer than the warehouse (a restored warehouse): all its entries dropped
    entries_deleted: int  # entries of superseded versions removed (expired ones are not counted)


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    since: datetime | None  # start of the hit/miss window
    versions_bumped: int
    entries_invalidated: int

    @property
    def lookups(self) -> int:
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.lookups if self.lookups else None


@dataclass(frozen=True)
class CacheUsage:
    entries: int
    entry_bytes: int  # MEMORY USAGE of this namespace's entries, overhead included
    redis_used_memory: int  # the whole server's used_memory (shared with whoever else uses it)


# --- the circuit breaker ----------------------------------------------------------------------------------


class _Breaker:
    """Closed: calls go to Redis. After a failure it opens for ``retry_after`` seconds, during which calls
    return their fallback without touching the network; one warning per outage, one info when it ends."""

    def __init__(self, label: str, retry_after: float):
        self.label, self.retry_after = label, retry_after
        self._lock = threading.Lock()
        self._open_until = 0.0
        self._down = False
        self.last_error: str | None = None

    @property
    def down(self) -> bool:
        return self._down

    def call(self, operation: Callable[[], T], fallback: T) -> T:
        if time.monotonic() < self._open_until:
            return fallback
        try:
            result = operation()
        except redis.RedisError as error:
            self._failed(error)
            return fallback
        if self._down:
            with self._lock:
                if self._down:
                    self._down = False
                    log.info("Redis cache at %s is reachable again", self.label)
        return result

    def _failed(self, error: redis.RedisError) -> None:
        with self._lock:
            self._open_until = time.monotonic() + self.retry_after
            self.last_error = f"{type(error).__name__}: {error}"
            if self._down:
                return
            self._down = True
        log.warning("Redis cache at %s is unavailable (%s): answering without it, retrying every %g s",
                    self.label, self.last_error, self.retry_after)


def redacted(url: str) -> str:
    """The URL without its password, for logs and metadata."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


# --- the cache ------------------------------------------------------------------------------------------


class BacktestCache:
    """Backtest results of one warehouse in Redis. Every method answers even with Redis down (see above).

    ``socket_timeout`` bounds each call to a hung server; ``retry_after`` is how long the breaker waits before
    trying again after a failure.
    """

    def __init__(self, redis_url: str, namespace: str, *, ttl_seconds: int = TTL_SECONDS,
                 socket_timeout: float = 0.5, retry_after: float = 5.0):
        if not re.fullmatch(r"[0-9a-z_-]+", namespace):
            raise ValueError(f"namespace={namespace!r}: expected lower-case letters, digits, '_' or '-'")
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds={ttl_seconds!r}: expected a positive number of seconds")
        self.namespace = namespace
        self.prefix = f"cryptobt:{namespace}"
        self.ttl_seconds = int(ttl_seconds)
        self.url = redacted(redis_url)
        # redis-py's default retries back off for seconds; here one immediate retry on a broken connection
        # (a pooled socket a restarted server closed), none on a timeout: the breaker decides the rest.
        self.client = redis.Redis.from_url(
            redis_url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        )
        self._breaker = _Breaker(self.url, retry_after)
        self._get_many = self.client.register_script(GET_MANY)
        self._put_many = self.client.register_script(PUT_MANY)
        self._advance = self.client.register_script(ADVANCE_VERSIONS)

    @classmethod
    def for_warehouse(cls, warehouse_url: str | None = None, redis_url: str | None = None,
                      **options: Any) -> BacktestCache:
        """The cache of the warehouse at ``warehouse_url`` (default: settings) in the Redis at ``redis_url``
        (default: CRYPTOBT_REDIS_URL, else the embedded server)."""
        with connect(warehouse_url) as conn:
            namespace = warehouse_namespace(conn)
        return cls(redis_url or settings.redis_url(), namespace, **options)

    # -- keys of this namespace
    def _entry(self, key: BacktestKey) -> str:
        return key.redis_key(self.prefix)

    def _index(self, crypto_id: int) -> str:
        return f"{self.prefix}:i:{crypto_id}"

    @property
    def _versions(self) -> str:
        return f"{self.prefix}:versions"

    @property
    def _stats(self) -> str:
        return f"{self.prefix}:stats"

    # -- state
    @property
    def available(self) -> bool:
        """False while the breaker is open after a failure (no call is made to find out)."""
        return not self._breaker.down

    @property
    def last_error(self) -> str | None:
        return self._breaker.last_error

    def ping(self) -> bool:
        """Whether Redis answers now (through the breaker: False without a call while it is open)."""
        return self._breaker.call(lambda: bool(self.client.ping()), False)

    # -- the request path
    def get_many(self, keys: Iterable[BacktestKey]) -> dict[BacktestKey, dict[str, Any]]:
        """The cached results among ``keys`` (misses are absent), counted as hits and misses; one round trip
        per 1,000 keys."""
        keys = list(dict.fromkeys(keys))
        if not keys:
            return {}

        def fetch() -> dict[BacktestKey, dict[str, Any]]:
            found = {}
            for first in range(0, len(keys), KEYS_PER_CALL):
                chunk = keys[first : first + KEYS_PER_CALL]
                values = self._get_many(keys=[self._stats, *map(self._entry, chunk)],
                                        args=[int(time.time()), STATS_TTL_SECONDS])
                for key, value in zip(chunk, values):
                    if value is not None:
                        found[key] = decode_result(value)
            return found

        return self._breaker.call(fetch, {})

    def get(self, key: BacktestKey) -> dict[str, Any] | None:
        return self.get_many([key]).get(key)

    def put_many(self, results: Mapping[BacktestKey, Mapping[str, Any]]) -> PutReport:
        """Store results for 24 h, except those whose data version Redis already knows to be superseded."""
        items = [(key, encode_result(result)) for key, result in results.items()]
        if not items:
            return PutReport(0, 0, 0)

        def store() -> PutReport:
            written = refused = 0
            for first in range(0, len(items), KEYS_PER_CALL // 2):
                chunk = items[first : first + KEYS_PER_CALL // 2]
                keys, args = [self._versions], [self.ttl_seconds]
                for key, value in chunk:
                    keys += [self._entry(key), self._index(key.crypto_id)]
                    args += [key.crypto_id, key.data_version, value]
                done, stale = self._put_many(keys=keys, args=args)
                written, refused = written + done, refused + stale
            return PutReport(written, refused, 0)

        return self._breaker.call(store, PutReport(0, 0, len(items)))

    def put(self, key: BacktestKey, result: Mapping[str, Any]) -> bool:
        return self.put_many({key: result}).written == 1

    # -- invalidation
    def recorded_versions(self) -> dict[int, int] | None:
        """crypto_id -> the newest data version Redis knows of (absent: none, read as 0); None if unreachable."""
        def read() -> dict[int, int]:
            return {int(c): int(v) for c, v in self.client.hgetall(self._versions).items()}

        return self._breaker.call(read, None)

    def server_run_id(self) -> str | None:
        """Redis's run id: new at every server start (a restart forgets every record)."""
        return self._breaker.call(lambda: self.client.info("server")["run_id"], None)

    def advance_versions(self, versions: Mapping[int, int]) -> VersionAdvance | None:
        """Bring Redis's record to the warehouse's ``versions`` (crypto_id -> data_version, as read from
        market.cryptos) and delete every entry of an older version. Idempotent. None if unreachable."""
        pairs = sorted((int(c), int(v)) for c, v in versions.items())

        def advance() -> VersionAdvance:
            totals = [0, 0, 0, 0]
            for first in range(0, len(pairs), CRYPTOS_PER_ADVANCE):
                chunk = pairs[first : first + CRYPTOS_PER_ADVANCE]
                args: list[int] = [STATS_TTL_SECONDS]
                for crypto_id, version in chunk:
                    args += [crypto_id, version]
                counts = self._advance(keys=[self._versions, self._stats, *(self._index(c) for c, _ in chunk)],
                                       args=args)
                totals = [t + n for t, n in zip(totals, counts)]
            return VersionAdvance(*totals)

        return self._breaker.call(advance, None)

    # -- observation and upkeep
    def stats(self, *, reset: bool = False) -> CacheStats | None:
        """The counters; ``reset`` starts a new hit/miss window atomically. None if unreachable."""
        def read() -> CacheStats:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.hgetall(self._stats)
                if reset:
                    pipe.hset(self._stats, mapping={"hits": 0, "misses": 0, "since": int(time.time())})
                    pipe.expire(self._stats, STATS_TTL_SECONDS)
                fields = {k.decode(): int(v) for k, v in pipe.execute()[0].items()}
            since = fields.get("since")
            return CacheStats(
                hits=fields.get("hits", 0), misses=fields.get("misses", 0),
                since=datetime.fromtimestamp(since, UTC) if since else None,
                versions_bumped=fields.get("versions_bumped", 0),
                entries_invalidated=fields.get("entries_invalidated", 0),
            )

        return self._breaker.call(read, None)

    def _scan(self, pattern: str) -> Iterable[bytes]:
        return self.client.scan_iter(match=f"{self.prefix}:{pattern}", count=1000)

    def usage(self) -> CacheUsage | None:
        """Entries and their memory in this namespace (a SCAN: for the cache asset, not the request path)."""
        def measure() -> CacheUsage:
            entries = entry_bytes = 0
            batch: list[bytes] = []

            def flush() -> None:
                nonlocal entry_bytes
                with self.client.pipeline(transaction=False) as pipe:
                    for key in batch:
                        pipe.memory_usage(key, samples=0)
                    entry_bytes += sum(n or 0 for n in pipe.execute())  # None: expired meanwhile
                batch.clear()

            for key in self._scan("r:*"):
                entries += 1
                batch.append(key)
                if len(batch) == KEYS_PER_CALL:
                    flush()
            flush()
            return CacheUsage(entries, entry_bytes, int(self.client.info("memory")["used_memory"]))

        return self._breaker.call(measure, None)

    def clear(self) -> int | None:
        """Delete every key of this namespace (and no other: never FLUSHDB a shared Redis). None if unreachable."""
        def delete() -> int:
            deleted = 0
            batch: list[bytes] = []
            for key in self._scan("*"):
                batch.append(key)
                if len(batch) == KEYS_PER_CALL:
                    deleted += self.client.unlink(*batch)
                    batch.clear()
            return deleted + (self.client.unlink(*batch) if batch else 0)

        return self._breaker.call(delete, None)

    def close(self) -> None:
        self.client.close()
