INSERT INTO market.rollup_refreshes
    (window_start, window_end, ranges_consumed, days_refreshed, weeks_refreshed, ranges_pending, milliseconds)
VALUES (%(window_start)s, %(window_end)s, %(ranges_consumed)s, %(days_refreshed)s, %(weeks_refreshed)s,
        (SELECT count(*) FROM market.invalidations), %(milliseconds)s)
RETURNING refresh_id, ranges_pending;
