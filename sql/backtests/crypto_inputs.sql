-- Cryptos by symbol or by id, with what a backtest records about its inputs: the data version of their
-- bars, and whether the daily rollup still has changes of theirs to apply (market.invalidations).
SELECT c.crypto_id, c.symbol, c.data_version, c.bar_seconds,
       EXISTS (SELECT 1 FROM market.invalidations i WHERE i.crypto_id = c.crypto_id) AS rollup_pending
FROM market.cryptos c
WHERE c.symbol = ANY(%(symbols)s::text[]) OR c.crypto_id = ANY(%(crypto_ids)s::integer[]);
