-- Missing bars per crypto over the last 30 days of its own data, from its bar interval.
SELECT c.symbol,
       floor(extract(epoch FROM c.last_ts - w.window_start) / c.bar_seconds)::bigint + 1 AS expected_bars,
       count(p.ts) AS bars
FROM market.cryptos c
CROSS JOIN LATERAL (SELECT greatest(c.first_ts, c.last_ts - interval '720 hours') AS window_start) w
JOIN market.prices p ON p.crypto_id = c.crypto_id AND p.ts BETWEEN w.window_start AND c.last_ts
WHERE c.bar_seconds IS NOT NULL AND c.last_ts IS NOT NULL
GROUP BY c.symbol, c.last_ts, w.window_start, c.bar_seconds
HAVING count(p.ts) < floor(extract(epoch FROM c.last_ts - w.window_start) / c.bar_seconds)::bigint + 1
ORDER BY c.symbol;
