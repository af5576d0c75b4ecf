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

CREATE TABLE market.prices_weekly (LIKE market.prices_daily INCLUDING ALL);
ALTER TABLE market.prices_weekly SET (fillfactor = 70);
