-- Forget staged bars identical to the stored ones before the upsert: ON CONFLICT DO UPDATE locks every
-- conflicting row (a write and WAL per row) even when its WHERE then skips the update, so a re-load of
-- unchanged data would rewrite the whole range. ANALYZE first: the planner then joins a big batch with a
-- hash or merge join and a small one with index probes.
ANALYZE pg_temp.staging_prices;
DELETE FROM pg_temp.staging_prices s
USING market.prices p
WHERE p.crypto_id = s.crypto_id AND p.ts = s.ts
  AND (p.open, p.high, p.low, p.close, p.volume) IS NOT DISTINCT FROM (s.open, s.high, s.low, s.close, s.volume);
