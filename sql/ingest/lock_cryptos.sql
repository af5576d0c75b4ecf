-- The cryptos a load touches, locked in id order: loads of the same crypto run one after another
-- (so its bar interval is decided once), loads of different cryptos run side by side.
SELECT crypto_id, symbol, bar_seconds
FROM market.cryptos
WHERE symbol = ANY(%(symbols)s)
ORDER BY crypto_id
FOR UPDATE;
