-- A random sample of a rollup's buckets beside the same buckets aggregated from scratch out of market.prices.
-- {rollup} is market.prices_daily or market.prices_weekly, %(width)s its bucket width.
WITH sample AS (
    SELECT crypto_id, bucket, open, high, low, close, volume, n_bars
    FROM {rollup}
    ORDER BY random()
    LIMIT %(limit)s
)
SELECT s.crypto_id, s.bucket,
       s.open, s.high, s.low, s.close, s.volume, s.n_bars,
       (array_agg(p.open ORDER BY p.ts))[1] AS scratch_open,
       max(p.high) AS scratch_high,
       min(p.low) AS scratch_low,
       (array_agg(p.close ORDER BY p.ts DESC))[1] AS scratch_close,
       sum(p.volume) AS scratch_volume,
       count(p.ts) AS scratch_n_bars
FROM sample s
LEFT JOIN market.prices p
  ON p.crypto_id = s.crypto_id AND p.ts >= s.bucket AND p.ts < s.bucket + %(width)s::interval
GROUP BY s.crypto_id, s.bucket, s.open, s.high, s.low, s.close, s.volume, s.n_bars;
