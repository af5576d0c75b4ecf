-- Which of the batch's cryptos already hold bars inside the batch's time range for that crypto: their rows
-- go through the upsert; the others can be copied straight in. Times come as microseconds since 1970
-- (an integer array is several times cheaper to send than timestamps).
SELECT r.crypto_id
FROM unnest(%(crypto_ids)s::integer[], %(range_starts_us)s::bigint[], %(range_ends_us)s::bigint[])
    AS r (crypto_id, start_us, end_us)
WHERE EXISTS (
    SELECT 1 FROM market.prices p
    WHERE p.crypto_id = r.crypto_id
      AND p.ts BETWEEN TIMESTAMPTZ 'epoch' + r.start_us * INTERVAL '1 microsecond'
                   AND TIMESTAMPTZ 'epoch' + r.end_us * INTERVAL '1 microsecond'
);
