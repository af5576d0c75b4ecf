-- market.prices_weekly from scratch out of market.prices_daily.
INSERT INTO market.prices_weekly (crypto_id, bucket, open, high, low, close, volume, n_bars)
SELECT crypto_id,
       date_bin('7 days', bucket, TIMESTAMPTZ '2000-01-03 00:00+00') AS week,
       (array_agg(open ORDER BY bucket))[1],
       max(high),
       min(low),
       (array_agg(close ORDER BY bucket DESC))[1],
       sum(volume),
       sum(n_bars)
FROM market.prices_daily
GROUP BY 1, 2;
