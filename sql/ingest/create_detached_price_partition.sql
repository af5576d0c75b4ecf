-- One year of market.prices as a plain table of the same shape, not yet attached and without its primary
-- key, so a load can fill it with COPY (FREEZE) before building the index in one sort. The {bound} CHECK
-- matches the partition bound, which lets ATTACH PARTITION skip its validation scan.
CREATE TABLE market.{partition} (
    LIKE market.prices INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE,
    CONSTRAINT {bound} CHECK (ts >= {year_start} AND ts < {next_year_start})
);
