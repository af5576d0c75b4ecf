INSERT INTO market.rollup_refreshes
    (window_start, window_end, ranges_consumed, days_refreshed, weeks_refreshed, ranges_pending, milliseconds)
SELECT %(window_start)s, %(window_end)s,
       (SELECT count(*) FROM pg_temp.refresh_ranges),
       (SELECT coalesce(sum(extract(day FROM last_day - first_day) + 1), 0) FROM pg_temp.refresh_days),
       (SELECT count(*) FROM pg_temp.refresh_weeks),
       (SELECT count(*) FROM market.invalidations),
       %(milliseconds)s
RETURNING refresh_id, ranges_consumed, days_refreshed, weeks_refreshed, ranges_pending;
