-- serving.crypto_extremes from the whole daily rollup (the first refresh of a warehouse, and after a rollup
-- rebuild, which records no rollup_changes). Every pending entry of market.rollup_changes is covered by
-- this scan, so all are taken off the log. Returns what sql/dashboard/apply_rollup_changes.sql returns.
WITH consumed AS (
    DELETE FROM market.rollup_changes
    RETURNING change_id
),
extremes AS MATERIALIZED (
    SELECT crypto_id, ath, ath_day, atl, atl_day FROM serving.crypto_extremes_from_history
),
changed AS (
    INSERT INTO serving.crypto_extremes AS e (crypto_id, ath, ath_day, atl, atl_day)
    SELECT crypto_id, ath, ath_day, atl, atl_day FROM extremes
    ON CONFLICT (crypto_id) DO UPDATE
        SET ath = excluded.ath, ath_day = excluded.ath_day, atl = excluded.atl, atl_day = excluded.atl_day
        WHERE (e.ath, e.ath_day, e.atl, e.atl_day)
              IS DISTINCT FROM (excluded.ath, excluded.ath_day, excluded.atl, excluded.atl_day)
    RETURNING e.crypto_id
),
gone AS (  -- cryptos without daily buckets (none while loads never delete bars)
    DELETE FROM serving.crypto_extremes e
    WHERE NOT EXISTS (SELECT FROM extremes x WHERE x.crypto_id = e.crypto_id)
    RETURNING e.crypto_id
)
SELECT (SELECT count(*) FROM consumed) AS changes_applied,
       (SELECT max(change_id) FROM consumed) AS through_change_id,
       (SELECT count(*) FROM extremes) AS cryptos_rescanned,
       ARRAY(SELECT c.symbol FROM (SELECT crypto_id FROM changed UNION SELECT crypto_id FROM gone) x
             JOIN market.cryptos c USING (crypto_id) ORDER BY c.symbol) AS extremes_changed;
