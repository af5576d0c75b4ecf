-- The cryptos a load touches, locked in id order: loads of the same crypto run one after another
-- (so its bar interval is decided once), loads of different cryptos run side by side. first_ts and last_ts
-- bound the bars each holds (kept by finish_load under this lock): a batch outside them cannot conflict.
SELECT crypto_id, symbol, bar_seconds, first_ts, last_ts
FROM market.cryptos
WHERE symbol = ANY(%(symbols)s)
ORDER BY crypto_id
FOR UPDATE;
