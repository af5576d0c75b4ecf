-- Take the invalidation ranges that meet the refresh window [window_start, window_end) off the log into
-- pg_temp.refresh_ranges (create_refresh_ranges.sql), clipped to the window; what lies outside the window goes back on the log, pending.
-- Rows of loads not yet committed are invisible here and stay for the next refresh.
WITH consumed AS (
    DELETE FROM market.invalidations
    WHERE range_end >= %(window_start)s AND range_start < %(window_end)s
    RETURNING crypto_id, range_start, range_end, load_id
),
left_pending AS (
    INSERT INTO market.invalidations (crypto_id, range_start, range_end, load_id)
    SELECT crypto_id, range_start, %(window_start)s::timestamptz - interval '1 microsecond', load_id
    FROM consumed WHERE range_start < %(window_start)s
    UNION ALL
    SELECT crypto_id, %(window_end)s, range_end, load_id
    FROM consumed WHERE range_end >= %(window_end)s
)
INSERT INTO pg_temp.refresh_ranges (crypto_id, range_start, range_end)
SELECT crypto_id,
       greatest(range_start, %(window_start)s),
       least(range_end, %(window_end)s::timestamptz - interval '1 microsecond')
FROM consumed;
