-- Recompute the daily buckets of the given day spans from market.prices (open: first bar's open, close:
-- last bar's close). Loads never delete bars, so every bucket recomputed here exists afterwards: an upsert.
-- On the same snapshot, each crypto's head (market.rollup_heads) moves on exactly: to its latest bar if
-- that is among the bars recomputed here, else, if it has a head, to the latest of that and the bars
-- recomputed. A crypto without a head whose latest bar is not recomputed here gets none yet.
WITH spans AS (
    SELECT * FROM unnest(%(crypto_ids)s::integer[], %(first_days)s::timestamptz[], %(last_days)s::timestamptz[])
        AS s (crypto_id, first_day, last_day)
),
recomputed AS (
    SELECT s.crypto_id,
           (SELECT max(p.ts) FROM market.prices p WHERE p.crypto_id = s.crypto_id) AS latest_ts,
           max((SELECT max(p.ts) FROM market.prices p
                WHERE p.crypto_id = s.crypto_id AND p.ts >= s.first_day AND p.ts < s.last_day + interval '24 hours'))
               AS last_ts
    FROM spans s
    GROUP BY s.crypto_id
),
moved_heads AS (
    INSERT INTO market.rollup_heads AS h (crypto_id, rolled_through)
    SELECT crypto_id, last_ts
    FROM recomputed r
    WHERE last_ts = latest_ts  -- (no bars in the spans, after a windowed cut: no last_ts, no move)
       OR last_ts IS NOT NULL AND EXISTS (SELECT FROM market.rollup_heads o WHERE o.crypto_id = r.crypto_id)
    ON CONFLICT (crypto_id) DO UPDATE SET rolled_through = greatest(h.rolled_through, excluded.rolled_through)
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
  ON p.crypto_id = s.crypto_id AND p.ts >= s.first_day AND p.ts < s.last_day + interval '24 hours'
GROUP BY 1, 2
ON CONFLICT (crypto_id, bucket) DO UPDATE
    SET open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
        volume = excluded.volume, n_bars = excluded.n_bars;
