-- The bars a Dagster run's loads changed (their invalidation ranges), each with the close of the bar before
-- it so close-to-close moves can be judged. A systematic sample keeps very large backfills cheap.
WITH ranges AS (
    SELECT i.crypto_id, min(i.range_start) AS range_start, max(i.range_end) AS range_end
    FROM market.invalidations i
    JOIN market.loads l USING (load_id)
    WHERE l.run_id = %(run_id)s
    GROUP BY i.crypto_id
)
SELECT * FROM (
    SELECT p.crypto_id, p.ts, p.open, p.high, p.low, p.close, p.volume,
           lag(p.close) OVER (PARTITION BY p.crypto_id ORDER BY p.ts) AS previous_close,
           row_number() OVER (ORDER BY p.crypto_id, p.ts) AS position
    FROM ranges r
    JOIN market.prices p ON p.crypto_id = r.crypto_id AND p.ts BETWEEN r.range_start AND r.range_end
) bars
WHERE position %% %(every_nth)s = 0
ORDER BY crypto_id, ts;
