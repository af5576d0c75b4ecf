-- The dashboard computed live, straight from the whole daily rollup (extremes: a full scan, through
-- serving.crypto_extremes_from_history) and the raw bars: what the materialized view must equal (its asset
-- check), and the naive view the benchmark refreshes beside it. Same columns, same rows, same definitions
-- (DESIGN.md, "Definitions pinned for the dashboard"); day arithmetic in hours, as in the view.
WITH latest AS (
    SELECT c.crypto_id, c.symbol, p.ts, p.close, date_bin('1 day', p.ts, TIMESTAMPTZ '2000-01-03 00:00+00') AS day
    FROM market.cryptos c
    CROSS JOIN LATERAL (
        SELECT ts, close FROM market.prices WHERE crypto_id = c.crypto_id ORDER BY ts DESC LIMIT 1
    ) p
    WHERE c.in_universe
),
windows AS (
    SELECT l.crypto_id,
           max(d.high) FILTER (WHERE d.bucket >= l.day - interval '144 hours') AS high_7d,
           min(d.low) FILTER (WHERE d.bucket >= l.day - interval '144 hours') AS low_7d,
           sum(d.volume) FILTER (WHERE d.bucket >= l.day - interval '144 hours') AS volume_7d,
           max(d.high) AS high_30d,
           min(d.low) AS low_30d,
           sum(d.volume) AS volume_30d
    FROM latest l
    JOIN market.prices_daily d
      ON d.crypto_id = l.crypto_id AND d.bucket BETWEEN l.day - interval '696 hours' AND l.day
    GROUP BY l.crypto_id
)
SELECT l.crypto_id,
       l.symbol,
       l.ts AS as_of,
       l.close AS current_price,
       day_ago.close AS price_24h_ago,
       (l.close - day_ago.close) / day_ago.close * 100 AS change_24h_percent,
       w.high_7d, w.low_7d, w.volume_7d, w.high_30d, w.low_30d, w.volume_30d,
       x.ath, (x.ath_day AT TIME ZONE 'UTC')::date AS ath_date,
       x.atl, (x.atl_day AT TIME ZONE 'UTC')::date AS atl_date
FROM latest l
JOIN serving.crypto_extremes_from_history x ON x.crypto_id = l.crypto_id
LEFT JOIN windows w ON w.crypto_id = l.crypto_id
LEFT JOIN LATERAL (
    SELECT close FROM market.prices
    WHERE crypto_id = l.crypto_id AND ts <= l.ts - interval '24 hours'
    ORDER BY ts DESC LIMIT 1
) day_ago ON true
