-- The portable refresh in one statement, on one snapshot: takes the pending ranges off the log
-- (consume_invalidations.sql), then, for each crypto whose every consumed range starts after the latest bar
-- its rollups hold (market.rollup_heads), merges its new bars into their day and week rows: high and low
-- widen, close becomes the last new close, volume and n_bars add up, open stays; days and weeks after the
-- head's get new rows (they hold no bar yet). The merged bars are later than every bar already in their
-- bucket, so a merged row equals the bucket aggregated afresh (volume to float rounding). Returns the
-- refresh's counts and the spans of the other cryptos, whose buckets refresh_daily.sql and
-- refresh_weekly.sql recompute from their bars.
-- Planned with nested loops only (refresh_settings.sql): each join probes an index once per crypto or per
-- new bucket, whatever the row estimates, which know nothing of bars newer than the last ANALYZE.
WITH {consume_invalidations},
heads AS MATERIALIZED (
    SELECT s.crypto_id, s.first_day, s.last_day, h.rolled_through,
           coalesce(h.rolled_through < min(s.first_ts) OVER (PARTITION BY s.crypto_id), false) AS appended
    FROM spans s
    LEFT JOIN market.rollup_heads h ON h.crypto_id = s.crypto_id
),
new_days AS MATERIALIZED (
    -- The bars of the appended spans that the rollups do not hold yet, by UTC day; the head's own day
    -- has a row (it holds the head), later days have none. Open and close come from one ordering (the
    -- last element for close), so the bars are sorted once for both.
    SELECT p.crypto_id,
           date_bin('1 day', p.ts, TIMESTAMPTZ '2000-01-03 00:00+00') AS bucket,
           (array_agg(p.open ORDER BY p.ts))[1] AS open,
           max(p.high) AS high,
           min(p.low) AS low,
           (array_agg(p.close ORDER BY p.ts))[count(*)] AS close,
           sum(p.volume) AS volume,
           count(*)::integer AS n_bars,
           max(p.ts) AS last_ts,
           s.rolled_through
    FROM heads s
    JOIN market.prices p
      ON p.crypto_id = s.crypto_id AND p.ts > s.rolled_through
     AND p.ts >= s.first_day AND p.ts < s.last_day + interval '24 hours'
    WHERE s.appended
    GROUP BY 1, 2, s.rolled_through
),
new_weeks AS MATERIALIZED (
    SELECT crypto_id,
           date_bin('7 days', bucket, TIMESTAMPTZ '2000-01-03 00:00+00') AS bucket,
           (array_agg(open ORDER BY bucket))[1] AS open,
           max(high) AS high,
           min(low) AS low,
           (array_agg(close ORDER BY bucket))[count(*)] AS close,
           sum(volume) AS volume,
           sum(n_bars)::integer AS n_bars,
           rolled_through
    FROM new_days
    GROUP BY 1, 2, rolled_through
),
merged_days AS (
    UPDATE market.prices_daily d
    SET high = greatest(d.high, n.high), low = least(d.low, n.low), close = n.close,
        volume = d.volume + n.volume, n_bars = d.n_bars + n.n_bars
    FROM new_days n
    WHERE n.bucket = date_bin('1 day', n.rolled_through, TIMESTAMPTZ '2000-01-03 00:00+00')
      AND d.crypto_id = n.crypto_id AND d.bucket = n.bucket
    RETURNING d.crypto_id
),
inserted_days AS (
    INSERT INTO market.prices_daily (crypto_id, bucket, open, high, low, close, volume, n_bars)
    SELECT crypto_id, bucket, open, high, low, close, volume, n_bars
    FROM new_days
    WHERE bucket > date_bin('1 day', rolled_through, TIMESTAMPTZ '2000-01-03 00:00+00')
),
merged_weeks AS (
    UPDATE market.prices_weekly w
    SET high = greatest(w.high, n.high), low = least(w.low, n.low), close = n.close,
        volume = w.volume + n.volume, n_bars = w.n_bars + n.n_bars
    FROM new_weeks n
    WHERE n.bucket = date_bin('7 days', n.rolled_through, TIMESTAMPTZ '2000-01-03 00:00+00')
      AND w.crypto_id = n.crypto_id AND w.bucket = n.bucket
    RETURNING w.crypto_id
),
inserted_weeks AS (
    INSERT INTO market.prices_weekly (crypto_id, bucket, open, high, low, close, volume, n_bars)
    SELECT crypto_id, bucket, open, high, low, close, volume, n_bars
    FROM new_weeks
    WHERE bucket > date_bin('7 days', rolled_through, TIMESTAMPTZ '2000-01-03 00:00+00')
),
moved_heads AS (
    UPDATE market.rollup_heads h
    SET rolled_through = n.last_ts
    FROM (SELECT crypto_id, max(last_ts) AS last_ts FROM new_days GROUP BY crypto_id) n
    WHERE h.crypto_id = n.crypto_id
)
SELECT summary.ranges_consumed, summary.days_refreshed, summary.weeks_refreshed,
       (SELECT count(DISTINCT crypto_id) FROM heads WHERE appended)::integer AS cryptos_appended,
       -- Rows the heads say exist against rows merged: equal unless the rollups were edited by hand.
       (SELECT count(*) FROM new_days WHERE bucket = date_bin('1 day', rolled_through, TIMESTAMPTZ '2000-01-03 00:00+00'))
       + (SELECT count(*) FROM new_weeks WHERE bucket = date_bin('7 days', rolled_through, TIMESTAMPTZ '2000-01-03 00:00+00'))
       - (SELECT count(*) FROM merged_days) - (SELECT count(*) FROM merged_weeks) AS rows_missing,
       recompute.crypto_ids, recompute.first_days, recompute.last_days
FROM summary,
     (SELECT array_agg(crypto_id ORDER BY crypto_id, first_day) AS crypto_ids,
             array_agg(first_day ORDER BY crypto_id, first_day) AS first_days,
             array_agg(last_day ORDER BY crypto_id, first_day) AS last_days
      FROM heads
      WHERE NOT appended) AS recompute;
