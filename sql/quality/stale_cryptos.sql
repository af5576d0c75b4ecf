-- Cryptos whose newest bar is older than two bar intervals (at least a day) before now.
SELECT symbol, last_ts, now() - last_ts AS age
FROM market.cryptos
WHERE last_ts IS NOT NULL
  AND last_ts < now() - greatest(make_interval(secs => 2 * coalesce(bar_seconds, 86400)), interval '1 day')
ORDER BY last_ts;
