-- Bring market.cryptos in line with the universe file. Cryptos that left the file keep their rows (their
-- bars stay readable) but drop out of the universe.
WITH universe AS (
    SELECT * FROM unnest(%(crypto_ids)s::integer[], %(symbols)s::text[], %(names)s::text[], %(coingecko_ids)s::text[])
        AS u (crypto_id, symbol, name, coingecko_id)
),
upserted AS (
    INSERT INTO market.cryptos AS c (crypto_id, symbol, name, coingecko_id, in_universe)
    SELECT crypto_id, symbol, name, coingecko_id, true FROM universe
    ON CONFLICT (crypto_id) DO UPDATE
        SET symbol = excluded.symbol, name = excluded.name, coingecko_id = excluded.coingecko_id,
            in_universe = true, updated_at = now()
        WHERE (c.symbol, c.name, c.coingecko_id, c.in_universe)
              IS DISTINCT FROM (excluded.symbol, excluded.name, excluded.coingecko_id, true)
    RETURNING c.crypto_id, (c.xmax = 0) AS inserted
),
retired AS (
    UPDATE market.cryptos c SET in_universe = false, updated_at = now()
    WHERE c.in_universe AND c.crypto_id NOT IN (SELECT crypto_id FROM universe)
    RETURNING c.crypto_id
)
SELECT (SELECT count(*) FROM upserted WHERE inserted) AS added,
       (SELECT count(*) FROM upserted WHERE NOT inserted) AS changed,
       (SELECT count(*) FROM retired) AS retired;
