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
    RETURNING p.crypto_id, p.ts
),
per_crypto AS (
    -- Every part of one statement reads the same snapshot, so "before" sees the bars as they were before
    -- this insert: a changed bar that was there is an update. (xmax = 0 would say it too, but PostgreSQL
    -- refuses system columns in RETURNING of an upsert into a partitioned table.)
    SELECT changed.crypto_id,
           min(changed.ts) AS range_start,
           max(changed.ts) AS range_end,
           count(*) FILTER (WHERE before.ts IS NULL) AS rows_inserted,
           count(*) FILTER (WHERE before.ts IS NOT NULL) AS rows_updated
    FROM changed
    LEFT JOIN market.prices before ON before.crypto_id = changed.crypto_id AND before.ts = changed.ts
    GROUP BY changed.crypto_id
)
SELECT crypto_id, range_start, range_end, rows_inserted, rows_updated
FROM per_crypto
ORDER BY crypto_id;
