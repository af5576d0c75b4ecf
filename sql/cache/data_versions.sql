-- The data version of each crypto asked for (every crypto when crypto_ids is NULL). Loads bump it in their
-- own transaction whenever a crypto's bars change, so a cache key built on it goes stale at the load's commit.
SELECT crypto_id, data_version
FROM market.cryptos
WHERE %(crypto_ids)s::integer[] IS NULL OR crypto_id = ANY(%(crypto_ids)s::integer[])
ORDER BY crypto_id;
