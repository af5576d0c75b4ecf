-- A partial index over the bars since a fixed cutoff: the predicate must be a constant for the planner to
-- use it, so a schedule builds the next window's index and drops the last one. {concurrently}, {index},
-- {table}, {time_column} and {cutoff} are filled in as SQL.
CREATE INDEX {concurrently} IF NOT EXISTS {index} ON {table} ({time_column}, crypto_id)
    INCLUDE (open, high, low, close, volume)
    WHERE {time_column} >= {cutoff};
