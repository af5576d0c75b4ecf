-- Roll the refreshed days on into weeks (Monday buckets): every week that holds a refreshed day is
-- deleted and re-aggregated from market.prices_daily.
CREATE TEMPORARY TABLE refresh_weeks ON COMMIT DROP AS
SELECT DISTINCT crypto_id, week
FROM pg_temp.refresh_days,
     generate_series(date_bin('7 days', first_day, TIMESTAMPTZ '2000-01-03 00:00+00'),
                     date_bin('7 days', last_day, TIMESTAMPTZ '2000-01-03 00:00+00'),
                     interval '7 days') AS week;

DELETE FROM market.prices_weekly w
USING pg_temp.refresh_weeks r
WHERE w.crypto_id = r.crypto_id AND w.bucket = r.week;

INSERT INTO market.prices_weekly (crypto_id, bucket, open, high, low, close, volume, n_bars)
SELECT d.crypto_id,
       r.week,
       (array_agg(d.open ORDER BY d.bucket))[1],
       max(d.high),
       min(d.low),
       (array_agg(d.close ORDER BY d.bucket DESC))[1],
       sum(d.volume),
       sum(d.n_bars)
FROM pg_temp.refresh_weeks r
JOIN market.prices_daily d
  ON d.crypto_id = r.crypto_id AND d.bucket >= r.week AND d.bucket < r.week + interval '7 days'
GROUP BY 1, 2;
