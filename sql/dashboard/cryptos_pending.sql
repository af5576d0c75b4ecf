-- Cryptos with changes the dashboard has not caught up with yet: bars the rollups have not refreshed, or
-- rewritten days the dashboard has not applied. The view is expected to lag for these only.
SELECT crypto_id FROM market.invalidations
UNION
SELECT crypto_id FROM market.rollup_changes;
