-- Move staged bars into market.prices: new bars are inserted, changed bars replaced, identical bars left
-- alone (so loading the same data twice changes nothing). Returns, per crypto, the range of bar times
-- that changed and how many rows were inserted or updated.
WITH changed AS (
    INSERT INTO market.prices AS p (crypto_id, ts, open, high, low, close, volume)
    SELECT crypto_id, ts, open, high, low, close, volume
    FROM pg_temp.staging_prices
    ON CONFLICT (crypto_id, ts) DO UPDATE
        SET open = excluded.open, high = excluded.high, low = excluded.low,
            close = excluded.close, volume = excluded.volume
        WHERE (p.open, p.high, p.low, p.close, p.volume)
              IS DISTINCT FROM (excluded.open, excluded.high, excluded.low, excluded.close, excluded.volume)
    -- xmax is 0 on a freshly inserted row version and set on an updated one.
    RETURNING p.crypto_id, p.ts, (p.xmax = 0) AS inserted
),
per_crypto AS (
    SELECT crypto_id,
           min(ts) AS range_start,
           max(ts) AS range_end,
           count(*) FILTER (WHERE inserted) AS rows_inserted,
           count(*) FILTER (WHERE NOT inserted) AS rows_updated
    FROM changed
    GROUP BY crypto_id
)
SELECT crypto_id, range_start, range_end, rows_inserted, rows_updated
FROM per_crypto
ORDER BY crypto_id;
