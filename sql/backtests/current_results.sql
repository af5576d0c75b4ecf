-- Stored results that are still current for a batch: same window and interval, computed from the crypto's
-- present data version with no rollup change pending, by this engine version and strategy definition.
SELECT r.crypto_id, r.strategy_id, r.params_hash
FROM backtest.results r
JOIN backtest.runs u USING (run_id)
JOIN market.cryptos c USING (crypto_id)
JOIN unnest(%(strategy_ids)s::integer[], %(definition_hashes)s::text[]) AS d (strategy_id, definition_hash)
    ON d.strategy_id = r.strategy_id AND d.definition_hash = u.definition_hash
WHERE r.crypto_id = ANY(%(crypto_ids)s::integer[])
  AND r.bar_seconds = %(bar_seconds)s
  AND r.window_start IS NOT DISTINCT FROM %(window_start)s::timestamptz
  AND r.window_end IS NOT DISTINCT FROM %(window_end)s::timestamptz
  AND r.data_version = c.data_version
  AND NOT r.rollup_pending
  AND u.engine_version = %(engine_version)s;
