-- Recompute the daily buckets the consumed ranges touch: ranges become whole UTC days, overlapping or
-- adjacent day spans of a crypto merge into one, then those buckets are deleted and re-aggregated from
-- market.prices. Open is the first bar's open, close the last bar's close.
CREATE TEMPORARY TABLE refresh_days ON COMMIT DROP AS
WITH days AS (
    SELECT crypto_id,
           date_bin('1 day', range_start, TIMESTAMPTZ '2000-01-03 00:00+00') AS first_day,
           date_bin('1 day', range_end, TIMESTAMPTZ '2000-01-03 00:00+00') AS last_day
    FROM pg_temp.refresh_ranges
),
reach AS (
    SELECT *, max(last_day) OVER (PARTITION BY crypto_id ORDER BY first_day, last_day
                                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS covered_to
    FROM days
),
islands AS (
    SELECT *, count(*) FILTER (WHERE covered_to IS NULL OR first_day > covered_to + interval '1 day')
                  OVER (PARTITION BY crypto_id ORDER BY first_day, last_day) AS island
    FROM reach
)
SELECT crypto_id, min(first_day) AS first_day, max(last_day) AS last_day
FROM islands
GROUP BY crypto_id, island;

DELETE FROM market.prices_daily d
USING pg_temp.refresh_days r
WHERE d.crypto_id = r.crypto_id AND d.bucket BETWEEN r.first_day AND r.last_day;

INSERT INTO market.prices_daily (crypto_id, bucket, open, high, low, close, volume, n_bars)
SELECT p.crypto_id,
       date_bin('1 day', p.ts, TIMESTAMPTZ '2000-01-03 00:00+00') AS bucket,
       (array_agg(p.open ORDER BY p.ts))[1],
       max(p.high),
       min(p.low),
       (array_agg(p.close ORDER BY p.ts DESC))[1],
       sum(p.volume),
       count(*)
FROM pg_temp.refresh_days r
JOIN market.prices p
  ON p.crypto_id = r.crypto_id AND p.ts >= r.first_day AND p.ts < r.last_day + interval '1 day'
GROUP BY 1, 2;
