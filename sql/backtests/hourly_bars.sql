-- Raw hourly bars of many cryptos opening in [start, end) (NULL: unbounded): one row per crypto holding its
-- bars as arrays, sent as binary COPY (see daily_bars.sql).
COPY (
    SELECT c.crypto_id, b.*
    FROM market.cryptos c
    CROSS JOIN LATERAL (
        SELECT array_agg(p.ts) AS bar_times, array_agg(p.open), array_agg(p.high), array_agg(p.low),
               array_agg(p.close)
        FROM market.prices p
        WHERE p.crypto_id = c.crypto_id
          AND p.ts >= coalesce(%(start)s::timestamptz, '-infinity')
          AND p.ts < coalesce(%(end)s::timestamptz, 'infinity')
    ) b
    WHERE c.crypto_id = ANY(%(crypto_ids)s::integer[]) AND b.bar_times IS NOT NULL
) TO STDOUT (FORMAT BINARY)
