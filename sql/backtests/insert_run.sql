-- One engine call of a batch; write_ms and finished_at are set when the batch's results are in.
INSERT INTO backtest.runs (dagster_run_id, strategy_id, param_sets, params_hash, bar_seconds, window_start,
                           window_end, crypto_ids, data_versions, definition_hash, engine_version, started_at,
                           load_ms, engine_ms)
VALUES (%(dagster_run_id)s, %(strategy_id)s, %(param_sets)s, %(params_hash)s, %(bar_seconds)s, %(window_start)s,
        %(window_end)s, %(crypto_ids)s, %(data_versions)s, %(definition_hash)s, %(engine_version)s,
        %(started_at)s, %(load_ms)s, %(engine_ms)s)
RETURNING run_id;
