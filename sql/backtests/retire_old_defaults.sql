-- A run of the catalog's default parameters: results of other parameter sets that were the defaults once (the
-- catalog changed since) are kept but no longer marked as the defaults, so "is_default" stays one row per
-- crypto x strategy x interval x window.
UPDATE backtest.results r
SET is_default = false
WHERE r.crypto_id = ANY(%(crypto_ids)s::integer[])
  AND r.strategy_id = %(strategy_id)s
  AND r.is_default
  AND r.params_hash <> %(params_hash)s
  AND r.bar_seconds = %(bar_seconds)s
  AND r.window_start IS NOT DISTINCT FROM %(window_start)s::timestamptz
  AND r.window_end IS NOT DISTINCT FROM %(window_end)s::timestamptz;
