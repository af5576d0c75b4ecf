-- The stored results a run replaces (same crypto, strategy, parameter set, interval and window); their
-- curves go with them (ON DELETE CASCADE), their trades are deleted by the caller.
DELETE FROM backtest.results r
WHERE r.crypto_id = ANY(%(crypto_ids)s::integer[])
  AND r.strategy_id = %(strategy_id)s
  AND r.params_hash = ANY(%(params_hashes)s::text[])
  AND r.bar_seconds = %(bar_seconds)s
  AND r.window_start IS NOT DISTINCT FROM %(window_start)s::timestamptz
  AND r.window_end IS NOT DISTINCT FROM %(window_end)s::timestamptz
RETURNING r.result_id;
