-- Which of the batch's cryptos already hold bars inside the batch's time range for that crypto: their rows
-- go through the upsert; the others can be copied straight in.
SELECT r.crypto_id
FROM unnest(%(crypto_ids)s::integer[], %(range_starts)s::timestamptz[], %(range_ends)s::timestamptz[])
    AS r (crypto_id, range_start, range_end)
WHERE EXISTS (
    SELECT 1 FROM market.prices p
    WHERE p.crypto_id = r.crypto_id AND p.ts BETWEEN r.range_start AND r.range_end
);
