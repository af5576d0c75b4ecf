-- market.prices_daily from scratch in one pass (the rebuild a refresh avoids; used to measure it).
INSERT INTO market.prices_daily (crypto_id, bucket, open, high, low, close, volume, n_bars)
SELECT crypto_id,
       date_bin('1 day', ts, TIMESTAMPTZ '2000-01-03 00:00+00') AS bucket,
       (array_agg(open ORDER BY ts))[1],
       max(high),
       min(low),
       (array_agg(close ORDER BY ts DESC))[1],
       sum(volume),
       count(*)
FROM market.prices
GROUP BY 1, 2;
