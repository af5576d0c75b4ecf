-- Raw OHLCV bars, one row per crypto and bar open time, in yearly partitions the loader creates on demand
-- (sql/ingest/create_price_partition.sql): a load of new history fills fresh partitions, which PostgreSQL
-- can write without WAL at wal_level=minimal, and time-bounded queries skip the other years.
-- No foreign key to market.cryptos: its per-row trigger halves bulk-load speed, and the loader only
-- writes crypto_ids it has just read from market.cryptos under a row lock.
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
) PARTITION BY RANGE (ts);
