-- What the dashboard has yet to catch up on: the newest rollup change not applied, the last refresh, whether
-- a warehouse with data was never refreshed, and whether the universe moved (a crypto joined or left it, or
-- a symbol changed) since the view was last refreshed; and since when bars wait for the rollups (NULL: the
-- rollups are fresh).
WITH wanted AS (
    SELECT c.crypto_id, c.symbol
    FROM market.cryptos c
    JOIN serving.crypto_extremes e ON e.crypto_id = c.crypto_id
    WHERE c.in_universe
),
shown AS (
    SELECT crypto_id, symbol FROM serving.crypto_dashboard_summary
)
SELECT (SELECT max(change_id) FROM market.rollup_changes) AS newest_change,
       (SELECT max(refresh_id) FROM serving.dashboard_refreshes) AS last_refresh,
       NOT EXISTS (SELECT FROM serving.dashboard_refreshes)
           AND EXISTS (SELECT FROM market.prices_daily) AS never_refreshed,
       EXISTS ((SELECT * FROM wanted EXCEPT SELECT * FROM shown)
               UNION ALL
               (SELECT * FROM shown EXCEPT SELECT * FROM wanted)) AS universe_moved,
       (SELECT min(created_at) FROM market.invalidations) AS rollups_pending_since;
