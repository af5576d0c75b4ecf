-- The rollups compressed per crypto, as the raw hypertable is (0003). With the defaults (crypto_id only an
-- ordering column), a compressed batch mixes many cryptos, and the backtests, which read crypto by crypto,
-- decompressed every chunk once per crypto: the nightly read of 263 cryptos x 2,000 days took 9-11 s on
-- compressed daily rollups against 0.3-0.5 s compressed per crypto (bench/engine.py, TimescaleDB 2.17).
-- The settings cannot change while chunks are compressed: decompress, change them, compress again what the
-- policies (0005) would have compressed.
SELECT decompress_chunk(c, if_compressed => true) FROM show_chunks('market.prices_daily') c;
SELECT decompress_chunk(c, if_compressed => true) FROM show_chunks('market.prices_weekly') c;
ALTER MATERIALIZED VIEW market.prices_daily SET (
    timescaledb.compress = true, timescaledb.compress_segmentby = 'crypto_id', timescaledb.compress_orderby = 'bucket');
ALTER MATERIALIZED VIEW market.prices_weekly SET (
    timescaledb.compress = true, timescaledb.compress_segmentby = 'crypto_id', timescaledb.compress_orderby = 'bucket');
SELECT compress_chunk(c) FROM show_chunks('market.prices_daily', older_than => INTERVAL '180 days') c;
SELECT compress_chunk(c) FROM show_chunks('market.prices_weekly', older_than => INTERVAL '365 days') c;
