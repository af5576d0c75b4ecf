-- Not a statement on its own: the WITH list that consume_for_native.sql and consume_and_merge_appends.sql
-- start with (rollups.py splices it in), so both backends take, put back and record the same log entries.
-- Takes the invalidation ranges that meet the refresh window [window_start, window_end) off the log, puts
-- back what lies outside the window (still pending), and defines `spans`: the whole UTC days to recompute
-- per crypto, overlapping or adjacent day spans merged into one, with first_ts, the earliest changed bar
-- time in the span. Only entries up to %(through_id)s are taken: rows of loads not yet committed (or logged
-- after a native refresh began) stay for the next refresh. The spans also go to market.rollup_changes, for
-- what is derived from the daily rollup. `summary` counts what the refresh covers.
consumed AS (
    DELETE FROM market.invalidations
    WHERE range_end >= %(window_start)s AND range_start < %(window_end)s
      AND invalidation_id <= %(through_id)s
    RETURNING crypto_id, range_start, range_end, load_id
),
left_pending AS (
    INSERT INTO market.invalidations (crypto_id, range_start, range_end, load_id)
    SELECT crypto_id, range_start, %(window_start)s::timestamptz - interval '1 microsecond', load_id
    FROM consumed WHERE range_start < %(window_start)s
    UNION ALL
    SELECT crypto_id, %(window_end)s, range_end, load_id
    FROM consumed WHERE range_end >= %(window_end)s
),
days AS (
    SELECT crypto_id,
           greatest(range_start, %(window_start)s) AS first_ts,
           date_bin('1 day', greatest(range_start, %(window_start)s), TIMESTAMPTZ '2000-01-03 00:00+00') AS first_day,
           date_bin('1 day', least(range_end, %(window_end)s::timestamptz - interval '1 microsecond'),
                    TIMESTAMPTZ '2000-01-03 00:00+00') AS last_day
    FROM consumed
),
reach AS (
    SELECT *, max(last_day) OVER (PARTITION BY crypto_id ORDER BY first_day, last_day
                                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS covered_to
    FROM days
),
islands AS (
    SELECT *, count(*) FILTER (WHERE covered_to IS NULL OR first_day > covered_to + interval '24 hours')
                  OVER (PARTITION BY crypto_id ORDER BY first_day, last_day) AS island
    FROM reach
),
spans AS (
    SELECT crypto_id, min(first_day) AS first_day, max(last_day) AS last_day, count(*) AS ranges,
           min(first_ts) AS first_ts
    FROM islands
    GROUP BY crypto_id, island
),
recorded AS (
    INSERT INTO market.rollup_changes (crypto_id, first_day, last_day)
    SELECT crypto_id, first_day, last_day FROM spans
),
summary AS (
    -- A crypto's spans are apart by a day or more, so two of them share at most a week, and only in turn.
    SELECT coalesce(sum(ranges), 0)::integer AS ranges_consumed,
           coalesce(sum(extract(epoch FROM last_day - first_day)::bigint / 86400 + 1), 0)::integer AS days_refreshed,
           coalesce(sum(extract(epoch FROM last_week - first_week)::bigint / 604800 + 1
                        - coalesce(first_week = previous_last_week, false)::integer), 0)::integer AS weeks_refreshed
    FROM (
        SELECT ranges, first_day, last_day, first_week, last_week,
               lag(last_week) OVER (PARTITION BY crypto_id ORDER BY first_day) AS previous_last_week
        FROM (SELECT *, date_bin('7 days', first_day, TIMESTAMPTZ '2000-01-03 00:00+00') AS first_week,
                        date_bin('7 days', last_day, TIMESTAMPTZ '2000-01-03 00:00+00') AS last_week
              FROM spans) AS s
    ) AS weeks_of_spans
)
