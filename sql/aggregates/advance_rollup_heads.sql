-- After refresh_daily.sql and refresh_weekly.sql recomputed these cryptos' buckets: each head moves to
-- the crypto's latest bar now. That is at or after every bar the rollups hold, and any bar up to it that
-- they lack came with a load whose range is still on the log, so market.rollup_heads stays true.
INSERT INTO market.rollup_heads AS h (crypto_id, rolled_through)
SELECT c.crypto_id, (SELECT max(p.ts) FROM market.prices p WHERE p.crypto_id = c.crypto_id)
FROM (SELECT DISTINCT unnest(%(crypto_ids)s::integer[]) AS crypto_id) AS c
ON CONFLICT (crypto_id) DO UPDATE SET rolled_through = greatest(h.rolled_through, excluded.rolled_through);
