-- Whole UTC days of many cryptos opening in [start, end) (NULL: unbounded), as binary COPY rows that numpy
-- decodes in one pass. The day still forming (raw bars that have not reached its end) is left out: its close
-- would change under a stored result.
COPY (
    SELECT d.crypto_id, d.bucket, d.open, d.high, d.low, d.close
    FROM market.prices_daily d
    JOIN market.cryptos c USING (crypto_id)
    WHERE d.crypto_id = ANY(%(crypto_ids)s::integer[])
      AND d.bucket >= coalesce(%(start)s::timestamptz, '-infinity')
      AND d.bucket < coalesce(%(end)s::timestamptz, 'infinity')
      AND d.bucket + INTERVAL '1 day' <= c.last_ts + c.bar_seconds * INTERVAL '1 second'
) TO STDOUT (FORMAT BINARY)
