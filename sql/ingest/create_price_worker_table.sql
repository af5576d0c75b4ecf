-- One new year of market.prices as a plain table a worker connection fills and indexes in its own
-- transaction; the load's main transaction attaches it later (attach_price_partition.sql). Its name,
-- prices_load_<load id>_<year>, is read by nobody and tells which load it belongs to, so a table a crashed
-- load left behind can be found and dropped (price_partitions.sql). No primary key yet: one sort after the
-- COPY is about twice as fast as keeping an index up to date row by row. The {bound} CHECK matches the
-- partition bound, which lets ATTACH PARTITION skip its validation scan.
CREATE TABLE market.{worker_table} (
    LIKE market.prices INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE,
    CONSTRAINT {bound} CHECK (ts >= {year_start} AND ts < {next_year_start})
);
