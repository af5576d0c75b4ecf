-- Per crypto, the latest bar time its portable rollups hold: no bar later than rolled_through is in
-- market.prices_daily or market.prices_weekly, and every bar at or before it that they lack (or hold in an
-- older version) still has its range on market.invalidations. So when all of a crypto's pending ranges
-- start after rolled_through, its changed bars are new bars later than everything in their buckets, and a
-- refresh merges them into the bucket rows instead of re-reading the buckets' bars
-- (sql/aggregates/consume_and_merge_appends.sql). Written only by the refresh, in its transaction; emptied
-- with the rollups by a rebuild. Unused by TimescaleDB's native aggregates.
CREATE TABLE market.rollup_heads (
    crypto_id      integer PRIMARY KEY,
    rolled_through timestamptz NOT NULL
) WITH (fillfactor = 50);  -- every appended hour updates each crypto's row: room for HOT updates
