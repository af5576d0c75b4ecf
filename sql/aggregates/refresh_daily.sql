-- Recompute the daily buckets of the given day spans from market.prices (open: first bar's open, close:
-- last bar's close). Loads never delete bars, so every bucket recomputed here exists afterwards: an upsert.
WITH spans AS (
    SELECT * FROM unnest(%(crypto_ids)s::integer[], %(first_days)s::timestamptz[], %(last_days)s::timestamptz[])
        AS s (crypto_id, first_day, last_day)
)
INSERT INTO market.prices_daily AS d (crypto_id, bucket, open, high, low, close, volume, n_bars)
SELECT p.crypto_id,
       date_bin('1 day', p.ts, TIMESTAMPTZ '2000-01-03 00:00+00') AS bucket,
       (array_agg(p.open ORDER BY p.ts))[1],
       max(p.high),
       min(p.low),
       (array_agg(p.close ORDER BY p.ts DESC))[1],
       sum(p.volume),
       count(*)
FROM spans s
JOIN market.prices p
  ON p.crypto_id = s.crypto_id AND p.ts >= s.first_day AND p.ts < s.last_day + interval '1 day'
GROUP BY 1, 2
ON CONFLICT (crypto_id, bucket) DO UPDATE
    SET open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
        volume = excluded.volume, n_bars = excluded.n_bars;
