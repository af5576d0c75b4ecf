-- The daily buckets each rollup refresh rewrote, per crypto: the invalidation log one level down. What is
-- derived from the rollups (the dashboard's all-time extremes) follows it instead of rescanning all history.
-- Written by sql/aggregates/consume_invalidations.sql in the refresh's transaction; consumers delete what
-- they have applied.
CREATE TABLE market.rollup_changes (
    change_id bigserial PRIMARY KEY,
    crypto_id integer NOT NULL,
    first_day timestamptz NOT NULL,
    last_day  timestamptz NOT NULL  -- inclusive: the start of the last day rewritten
);
