-- The invalidation log entries of one load: per crypto, the range of bar times whose bars changed.
INSERT INTO market.invalidations (crypto_id, range_start, range_end, load_id)
SELECT crypto_id, range_start, range_end, %(load_id)s
FROM unnest(%(crypto_ids)s::integer[], %(range_starts)s::timestamptz[], %(range_ends)s::timestamptz[])
    AS r (crypto_id, range_start, range_end);
