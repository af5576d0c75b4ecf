-- Binary COPY of validated bars into {table}: market.prices, a new partition of it, or the staging table.
COPY {table} (crypto_id, ts, open, high, low, close, volume) FROM STDIN (FORMAT BINARY{freeze})
