-- A batch's runs are written: how long the write took.
UPDATE backtest.runs SET write_ms = %(write_ms)s, finished_at = clock_timestamp()
WHERE run_id = ANY(%(run_ids)s::bigint[]);
