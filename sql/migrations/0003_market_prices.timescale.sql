-- Raw OHLCV bars on TimescaleDB: a hypertable in 30-day chunks, compressed per crypto once 90 days old.
-- Same names and columns as the portable table (0003_market_prices.sql): nothing downstream changes.
CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE market.prices (
    crypto_id integer NOT NULL,
    ts        timestamptz NOT NULL,
    open      double precision NOT NULL,
    high      double precision NOT NULL,
    low       double precision NOT NULL,
    close     double precision NOT NULL,
    volume    double precision NOT NULL,
    CONSTRAINT prices_pkey PRIMARY KEY (crypto_id, ts),
    -- PostgreSQL sorts NaN above every number, so "< 'Infinity'" also refuses NaN.
    CONSTRAINT prices_valid_bar CHECK (
        low > 0 AND high < 'Infinity' AND low <= high
        AND open BETWEEN low AND high AND close BETWEEN low AND high
        AND volume >= 0 AND volume < 'Infinity'
    )
);

SELECT create_hypertable('market.prices', by_range('ts', INTERVAL '30 days'));

ALTER TABLE market.prices SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'crypto_id',
    timescaledb.compress_orderby = 'ts'
);
SELECT add_compression_policy('market.prices', compress_after => INTERVAL '90 days');
