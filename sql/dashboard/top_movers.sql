-- The largest 24 h moves up and down, for the asset's preview table.
(SELECT symbol, current_price, price_24h_ago, change_24h_percent, as_of
 FROM serving.crypto_dashboard_summary
 WHERE change_24h_percent IS NOT NULL
 ORDER BY change_24h_percent DESC, symbol
 LIMIT %(per_side)s)
UNION
(SELECT symbol, current_price, price_24h_ago, change_24h_percent, as_of
 FROM serving.crypto_dashboard_summary
 WHERE change_24h_percent IS NOT NULL
 ORDER BY change_24h_percent, symbol
 LIMIT %(per_side)s)
ORDER BY change_24h_percent DESC, symbol;
