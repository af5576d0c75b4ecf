-- Daily and weekly OHLCV rollups of market.prices (portable PostgreSQL). UTC buckets aligned with
-- TimescaleDB's time_bucket: date_bin(width, ts, '2000-01-03 00:00+00'), so weeks start on Monday.
-- Kept fresh incrementally from market.invalidations by sql/aggregates/*.sql.
CREATE TABLE market.prices_daily (
    crypto_id integer NOT NULL,
    bucket    timestamptz NOT NULL,
    open      double precision NOT NULL,
    high      double precision NOT NULL,
    low       double precision NOT NULL,
    close     double precision NOT NULL,
    volume    double precision NOT NULL,
    n_bars    integer NOT NULL,
    PRIMARY KEY (crypto_id, bucket)
) WITH (fillfactor = 70);  -- room on each page: refreshed buckets update in place (HOT), index untouched

CREATE TABLE market.prices_weekly (
    crypto_id integer NOT NULL,
    bucket    timestamptz NOT NULL,
    open      double precision NOT NULL,
    high      double precision NOT NULL,
    low       double precision NOT NULL,
    close     double precision NOT NULL,
    volume    double precision NOT NULL,
    n_bars    integer NOT NULL,
    PRIMARY KEY (crypto_id, bucket)
) WITH (fillfactor = 70);

-- One row per refresh, for metadata and for seeing what a refresh cost.
CREATE TABLE market.rollup_refreshes (
    refresh_id      bigserial PRIMARY KEY,
    started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    window_start    timestamptz NOT NULL,
    window_end      timestamptz NOT NULL,
    ranges_consumed integer NOT NULL,
    days_refreshed  integer NOT NULL,
    weeks_refreshed integer NOT NULL,
    ranges_pending  integer NOT NULL,
    milliseconds    double precision NOT NULL
);
