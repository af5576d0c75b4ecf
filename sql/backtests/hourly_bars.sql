-- Raw hourly bars of many cryptos opening in [start, end) (NULL: unbounded), as binary COPY rows that numpy
-- decodes in one pass.
COPY (
    SELECT p.crypto_id, p.ts, p.open, p.high, p.low, p.close
    FROM market.prices p
    WHERE p.crypto_id = ANY(%(crypto_ids)s::integer[])
      AND p.ts >= coalesce(%(start)s::timestamptz, '-infinity')
      AND p.ts < coalesce(%(end)s::timestamptz, 'infinity')
) TO STDOUT (FORMAT BINARY)
