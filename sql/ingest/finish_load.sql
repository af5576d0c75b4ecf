-- What a load teaches market.cryptos: the bar interval (first load only), the data version (bumped where
-- bars changed) and the time span held. Changed ranges come as microseconds since 1970, NULL where a
-- crypto's bars did not change.
WITH touched AS (
    SELECT crypto_id,
           TIMESTAMPTZ 'epoch' + start_us * INTERVAL '1 microsecond' AS range_start,
           TIMESTAMPTZ 'epoch' + end_us * INTERVAL '1 microsecond' AS range_end
    FROM unnest(%(crypto_ids)s::integer[], %(range_starts_us)s::bigint[], %(range_ends_us)s::bigint[])
        AS t (crypto_id, start_us, end_us)
)
UPDATE market.cryptos c
SET bar_seconds  = coalesce(c.bar_seconds, %(bar_seconds)s),
    data_version = c.data_version + (t.range_start IS NOT NULL)::int,
    first_ts     = least(c.first_ts, t.range_start),
    last_ts      = greatest(c.last_ts, t.range_end),
    updated_at   = now()
FROM touched t
WHERE c.crypto_id = t.crypto_id;
