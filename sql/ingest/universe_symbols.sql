-- The cryptos of the universe with their CoinGecko ids, by rank: what the market-data assets fetch.
SELECT symbol, coingecko_id FROM market.cryptos WHERE in_universe ORDER BY crypto_id;
