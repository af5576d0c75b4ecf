-- Refresh one TimescaleDB continuous aggregate over whole buckets; {aggregate}, {window_start} and
-- {window_end} are filled in as SQL literals (CALL refuses to run inside the transaction a bind would open).
CALL refresh_continuous_aggregate({aggregate}, {window_start}, {window_end});
