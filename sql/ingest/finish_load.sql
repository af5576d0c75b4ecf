-- What a load teaches market.cryptos: the bar interval (first load only), the data version (bumped where
-- bars changed) and the time span held.
WITH touched AS (
    SELECT * FROM unnest(%(crypto_ids)s::integer[], %(range_starts)s::timestamptz[], %(range_ends)s::timestamptz[])
        AS t (crypto_id, range_start, range_end)
)
UPDATE market.cryptos c
SET bar_seconds  = coalesce(c.bar_seconds, %(bar_seconds)s),
    data_version = c.data_version + (t.range_start IS NOT NULL)::int,
    first_ts     = least(c.first_ts, t.range_start),
    last_ts      = greatest(c.last_ts, t.range_end),
    updated_at   = now()
FROM (SELECT crypto_id, range_start, range_end FROM touched) t
WHERE c.crypto_id = t.crypto_id;
