-- Rows read, changed and refused by the loads of one Dagster run.
SELECT coalesce(sum(rows_read), 0)::bigint AS rows_read,
       coalesce(sum(rows_inserted + rows_updated), 0)::bigint AS rows_changed,
       coalesce(sum(rows_rejected), 0)::bigint AS rows_refused
FROM market.loads
WHERE run_id = %(run_id)s;
