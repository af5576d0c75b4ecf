-- Keep every refused row; a re-load of the same source refreshes its rows instead of repeating them.
INSERT INTO market.rejected_prices AS r (load_id, source, line, symbol, ts, open, high, low, close, volume, rule, reason, raw)
SELECT DISTINCT ON (line, reason)
       %(load_id)s, %(source)s, line, symbol, ts, open, high, low, close, volume, rule, reason, raw
FROM pg_temp.staging_rejects
ORDER BY line, reason
ON CONFLICT (source, line, reason) DO UPDATE
    SET load_id = excluded.load_id, symbol = excluded.symbol, ts = excluded.ts, open = excluded.open,
        high = excluded.high, low = excluded.low, close = excluded.close, volume = excluded.volume,
        rule = excluded.rule, raw = excluded.raw, rejected_at = now();
