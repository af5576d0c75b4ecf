-- The span of bar times the pending invalidations cover inside the window, and the newest entry: what a
-- native (TimescaleDB) refresh must cover before those entries can be taken off the log.
SELECT max(invalidation_id) AS through_id,
       min(greatest(range_start, %(window_start)s)) AS first_ts,
       max(least(range_end, %(window_end)s::timestamptz - interval '1 microsecond')) AS last_ts
FROM market.invalidations
WHERE range_end >= %(window_start)s AND range_start < %(window_end)s;
