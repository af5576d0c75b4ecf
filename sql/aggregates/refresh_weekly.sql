-- Roll refreshed days on into weeks (Monday buckets): every week holding a day of the given spans is
-- recomputed from market.prices_daily.
WITH weeks AS (
    SELECT DISTINCT s.crypto_id, week
    FROM unnest(%(crypto_ids)s::integer[], %(first_days)s::timestamptz[], %(last_days)s::timestamptz[])
             AS s (crypto_id, first_day, last_day),
         generate_series(date_bin('7 days', s.first_day, TIMESTAMPTZ '2000-01-03 00:00+00'),
                         date_bin('7 days', s.last_day, TIMESTAMPTZ '2000-01-03 00:00+00'),
                         interval '168 hours') AS week
)
INSERT INTO market.prices_weekly AS w (crypto_id, bucket, open, high, low, close, volume, n_bars)
SELECT d.crypto_id,
       weeks.week,
       (array_agg(d.open ORDER BY d.bucket))[1],
       max(d.high),
       min(d.low),
       (array_agg(d.close ORDER BY d.bucket DESC))[1],
       sum(d.volume),
       sum(d.n_bars)
FROM weeks
JOIN market.prices_daily d
  ON d.crypto_id = weeks.crypto_id AND d.bucket >= weeks.week AND d.bucket < weeks.week + interval '168 hours'
GROUP BY 1, 2
ON CONFLICT (crypto_id, bucket) DO UPDATE
    SET open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
        volume = excluded.volume, n_bars = excluded.n_bars;
