-- Whole UTC days of many cryptos opening in [start, end) (NULL: unbounded): one row per crypto holding its
-- bars as arrays, sent as binary COPY, so numpy reads each array in one step instead of Python paying for
-- every bar as a row. Each crypto's days come from its own index range scan: in time order, and no
-- aggregation over the whole set (measured 0.22 s for 263 cryptos x 2,000 days, against 0.33-0.41 s for a
-- grouped aggregate). The day still forming (raw bars that have not reached its end) is left out: its close
-- would change under a stored result.
COPY (
    SELECT c.crypto_id, b.*
    FROM market.cryptos c
    CROSS JOIN LATERAL (
        SELECT array_agg(d.bucket) AS bar_times, array_agg(d.open), array_agg(d.high), array_agg(d.low),
               array_agg(d.close)
        FROM market.prices_daily d
        WHERE d.crypto_id = c.crypto_id
          AND d.bucket >= coalesce(%(start)s::timestamptz, '-infinity')
          AND d.bucket < coalesce(%(end)s::timestamptz, 'infinity')
          AND d.bucket <= c.last_ts + c.bar_seconds * INTERVAL '1 second' - INTERVAL '1 day'
    ) b
    WHERE c.crypto_id = ANY(%(crypto_ids)s::integer[]) AND b.bar_times IS NOT NULL
) TO STDOUT (FORMAT BINARY)
