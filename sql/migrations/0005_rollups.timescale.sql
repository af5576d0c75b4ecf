-- Daily and weekly rollups as native continuous aggregates (weekly on daily), with the same names and
-- columns as the portable tables (0005_rollups.sql). time_bucket's default origin is 2000-01-03, a Monday,
-- in UTC: the buckets equal the portable date_bin ones. Refreshed by refresh policies and on demand.
CREATE MATERIALIZED VIEW market.prices_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT crypto_id,
       time_bucket(INTERVAL '1 day', ts) AS bucket,
       first(open, ts) AS open,
       max(high) AS high,
       min(low) AS low,
       last(close, ts) AS close,
       sum(volume) AS volume,
       count(*)::integer AS n_bars
FROM market.prices
GROUP BY crypto_id, time_bucket(INTERVAL '1 day', ts)
WITH NO DATA;

CREATE MATERIALIZED VIEW market.prices_weekly
WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
SELECT crypto_id,
       time_bucket(INTERVAL '7 days', bucket) AS bucket,
       first(open, bucket) AS open,
       max(high) AS high,
       min(low) AS low,
       last(close, bucket) AS close,
       sum(volume) AS volume,
       sum(n_bars)::integer AS n_bars
FROM market.prices_daily
GROUP BY crypto_id, time_bucket(INTERVAL '7 days', bucket)
WITH NO DATA;

-- Policies catch late data even with no sensor running; the sensor refreshes right after each ingest.
SELECT add_continuous_aggregate_policy('market.prices_daily',
    start_offset => INTERVAL '30 days', end_offset => NULL, schedule_interval => INTERVAL '1 hour');
SELECT add_continuous_aggregate_policy('market.prices_weekly',
    start_offset => INTERVAL '35 days', end_offset => NULL, schedule_interval => INTERVAL '1 hour');

ALTER MATERIALIZED VIEW market.prices_daily SET (timescaledb.compress = true);
ALTER MATERIALIZED VIEW market.prices_weekly SET (timescaledb.compress = true);
SELECT add_compression_policy('market.prices_daily', compress_after => INTERVAL '180 days');
SELECT add_compression_policy('market.prices_weekly', compress_after => INTERVAL '365 days');
