-- Bring serving.crypto_extremes up to date with the daily buckets the rollup refreshes rewrote, and take
-- those entries off market.rollup_changes. Per crypto, with (high, day) the best of the rewritten days and
-- (ath, ath_day) the stored extreme:
--   * the stored day was not rewritten: the other days are as they were, so the new extreme is the better
--     of the two (higher; equal: the earlier day);
--   * it was rewritten and the rewritten days still reach it on that day or earlier: the rewritten best;
--   * else a correction lowered it (or the crypto is new here): rescan that crypto's whole daily history.
-- Lows alike, mirrored. Applying an entry twice gives the same result, so a refresh that reads daily
-- buckets newer than the entries it took (a rollup refresh committed meanwhile) is set right by the next.
-- Returns the entries applied, the newest of them, how many cryptos were rescanned and the symbols whose
-- extremes changed.
WITH consumed AS (
    DELETE FROM market.rollup_changes
    RETURNING change_id, crypto_id, first_day, last_day
),
rewritten AS (  -- a day in two entries comes twice: harmless for a max or a min
    SELECT d.crypto_id, d.bucket, d.high, d.low
    FROM consumed c
    JOIN market.prices_daily d ON d.crypto_id = c.crypto_id AND d.bucket BETWEEN c.first_day AND c.last_day
),
best AS (
    SELECT r.crypto_id,
           (array_agg(r.high ORDER BY r.high DESC, r.bucket))[1] AS high,
           (array_agg(r.bucket ORDER BY r.high DESC, r.bucket))[1] AS high_day,
           (array_agg(r.low ORDER BY r.low, r.bucket))[1] AS low,
           (array_agg(r.bucket ORDER BY r.low, r.bucket))[1] AS low_day,
           e.ath, e.ath_day, e.atl, e.atl_day,
           bool_or(r.bucket = e.ath_day) AS ath_rewritten,
           bool_or(r.bucket = e.atl_day) AS atl_rewritten
    FROM rewritten r
    LEFT JOIN serving.crypto_extremes e ON e.crypto_id = r.crypto_id
    GROUP BY r.crypto_id, e.crypto_id
),
judged AS (
    SELECT *,
           high > ath OR (high = ath AND high_day <= ath_day) AS high_wins,
           low < atl OR (low = atl AND low_day <= atl_day) AS low_wins
    FROM best
),
to_rescan AS (
    SELECT crypto_id FROM judged
    WHERE ath IS NULL OR (ath_rewritten AND NOT high_wins) OR (atl_rewritten AND NOT low_wins)
),
rescanned AS (  -- each crypto's own history, by index
    SELECT r.crypto_id,
           x.ath,
           (SELECT min(d.bucket) FROM market.prices_daily d
            WHERE d.crypto_id = r.crypto_id AND d.high = x.ath) AS ath_day,
           x.atl,
           (SELECT min(d.bucket) FROM market.prices_daily d
            WHERE d.crypto_id = r.crypto_id AND d.low = x.atl) AS atl_day
    FROM to_rescan r
    CROSS JOIN LATERAL (
        SELECT max(d.high) AS ath, min(d.low) AS atl FROM market.prices_daily d WHERE d.crypto_id = r.crypto_id
    ) x
),
new_extremes AS (
    SELECT crypto_id, ath, ath_day, atl, atl_day FROM rescanned
    UNION ALL
    SELECT j.crypto_id,
           CASE WHEN j.high_wins THEN j.high ELSE j.ath END,
           CASE WHEN j.high_wins THEN j.high_day ELSE j.ath_day END,
           CASE WHEN j.low_wins THEN j.low ELSE j.atl END,
           CASE WHEN j.low_wins THEN j.low_day ELSE j.atl_day END
    FROM judged j
    WHERE j.crypto_id NOT IN (SELECT crypto_id FROM to_rescan)
),
changed AS (
    INSERT INTO serving.crypto_extremes AS e (crypto_id, ath, ath_day, atl, atl_day)
    SELECT * FROM new_extremes
    ON CONFLICT (crypto_id) DO UPDATE
        SET ath = excluded.ath, ath_day = excluded.ath_day, atl = excluded.atl, atl_day = excluded.atl_day
        WHERE (e.ath, e.ath_day, e.atl, e.atl_day)
              IS DISTINCT FROM (excluded.ath, excluded.ath_day, excluded.atl, excluded.atl_day)
    RETURNING e.crypto_id
)
SELECT (SELECT count(*) FROM consumed) AS changes_applied,
       (SELECT max(change_id) FROM consumed) AS through_change_id,
       (SELECT count(*) FROM to_rescan) AS cryptos_rescanned,
       ARRAY(SELECT c.symbol FROM changed JOIN market.cryptos c USING (crypto_id) ORDER BY c.symbol)
           AS extremes_changed;
