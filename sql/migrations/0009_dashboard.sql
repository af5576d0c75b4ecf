-- The dashboard: one row per crypto of the universe (serving.crypto_dashboard_summary), built from small
-- inputs so that its refresh after an appended hour costs milliseconds, not a scan of all history:
--   * all-time extremes with their days, kept in serving.crypto_extremes and maintained from
--     market.rollup_changes by sql/dashboard/apply_rollup_changes.sql;
--   * each crypto's latest raw bar and the one 24 h before it: two index probes;
--   * the 30 UTC days up to the latest bar's day of the daily rollup: one index range per crypto.
-- Portable: on TimescaleDB market.prices is a hypertable and market.prices_daily a continuous aggregate,
-- and the same query applies.

-- The highest high and lowest low of each crypto's whole history, with the UTC day (the daily bucket) of
-- the earliest bar reaching them.
CREATE TABLE serving.crypto_extremes (
    crypto_id integer PRIMARY KEY,
    ath       double precision NOT NULL,
    ath_day   timestamptz NOT NULL,
    atl       double precision NOT NULL,
    atl_day   timestamptz NOT NULL
);

-- The same extremes computed from the whole daily rollup, the slow way (a scan of all history): what the first
-- refresh and a rebuild store, and what the live comparison and the benchmark's naive view read.
CREATE VIEW serving.crypto_extremes_from_history AS
WITH extremes AS (
    SELECT crypto_id, max(high) AS ath, min(low) AS atl
    FROM market.prices_daily
    GROUP BY crypto_id
)
SELECT x.crypto_id, x.ath, min(d.bucket) FILTER (WHERE d.high = x.ath) AS ath_day,
       x.atl, min(d.bucket) FILTER (WHERE d.low = x.atl) AS atl_day
FROM extremes x
JOIN market.prices_daily d ON d.crypto_id = x.crypto_id
GROUP BY x.crypto_id, x.ath, x.atl;

-- One row per dashboard refresh: what it applied and what it cost. The first refresh of a warehouse builds
-- serving.crypto_extremes from the whole daily rollup (a warehouse may hold data from before this migration).
CREATE TABLE serving.dashboard_refreshes (
    refresh_id         bigserial PRIMARY KEY,
    started_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    rebuilt            boolean NOT NULL,
    changes_applied    integer NOT NULL,
    through_change_id  bigint,
    cryptos_rescanned  integer NOT NULL,
    extremes_changed   integer NOT NULL,
    summary_rows       integer NOT NULL,
    milliseconds       double precision NOT NULL
);

-- Day arithmetic is written in hours: timestamptz ± '1 day' follows the session time zone across DST.
CREATE MATERIALIZED VIEW serving.crypto_dashboard_summary AS
SELECT c.crypto_id,
       c.symbol,
       latest.ts AS as_of,
       latest.close AS current_price,
       day_ago.close AS price_24h_ago,
       (latest.close - day_ago.close) / day_ago.close * 100 AS change_24h_percent,
       recent.high_7d,
       recent.low_7d,
       recent.volume_7d,
       recent.high_30d,
       recent.low_30d,
       recent.volume_30d,
       e.ath,
       (e.ath_day AT TIME ZONE 'UTC')::date AS ath_date,
       e.atl,
       (e.atl_day AT TIME ZONE 'UTC')::date AS atl_date
FROM market.cryptos c
JOIN serving.crypto_extremes e ON e.crypto_id = c.crypto_id
CROSS JOIN LATERAL (
    SELECT p.ts, p.close, date_bin('1 day', p.ts, TIMESTAMPTZ '2000-01-03 00:00+00') AS day
    FROM market.prices p
    WHERE p.crypto_id = c.crypto_id
    ORDER BY p.ts DESC
    LIMIT 1
) latest
LEFT JOIN LATERAL (
    SELECT p.close
    FROM market.prices p
    WHERE p.crypto_id = c.crypto_id AND p.ts <= latest.ts - interval '24 hours'
    ORDER BY p.ts DESC
    LIMIT 1
) day_ago ON true
CROSS JOIN LATERAL (
    SELECT max(d.high) FILTER (WHERE d.bucket >= latest.day - interval '144 hours') AS high_7d,
           min(d.low) FILTER (WHERE d.bucket >= latest.day - interval '144 hours') AS low_7d,
           sum(d.volume) FILTER (WHERE d.bucket >= latest.day - interval '144 hours') AS volume_7d,
           max(d.high) AS high_30d,
           min(d.low) AS low_30d,
           sum(d.volume) AS volume_30d
    FROM market.prices_daily d
    WHERE d.crypto_id = c.crypto_id
      AND d.bucket >= latest.day - interval '696 hours'
      AND d.bucket <= latest.day
) recent
WHERE c.in_universe;

-- REFRESH ... CONCURRENTLY needs a unique index; it is also the API's lookup key.
CREATE UNIQUE INDEX crypto_dashboard_summary_crypto_id ON serving.crypto_dashboard_summary (crypto_id);
