-- The invalidation log entries of one load: per crypto, the range of bar times whose bars changed.
-- Times come as microseconds since 1970.
INSERT INTO market.invalidations (crypto_id, range_start, range_end, load_id)
SELECT crypto_id,
       TIMESTAMPTZ 'epoch' + start_us * INTERVAL '1 microsecond',
       TIMESTAMPTZ 'epoch' + end_us * INTERVAL '1 microsecond',
       %(load_id)s
FROM unnest(%(crypto_ids)s::integer[], %(range_starts_us)s::bigint[], %(range_ends_us)s::bigint[])
    AS r (crypto_id, start_us, end_us);
