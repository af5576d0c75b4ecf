UPDATE market.loads
SET finished_at = clock_timestamp(),
    rows_inserted = %(rows_inserted)s, rows_updated = %(rows_updated)s, rows_unchanged = %(rows_unchanged)s,
    rows_collapsed = %(rows_collapsed)s, rows_rejected = %(rows_rejected)s,
    min_ts = %(min_ts)s, max_ts = %(max_ts)s
WHERE load_id = %(load_id)s;
