-- Per crypto, the latest bar its portable rollups hold: its day and week rows hold it, no later bar is in
-- market.prices_daily or market.prices_weekly, and every bar up to it that they lack (or hold in an older
-- version) still has its range on market.invalidations. So when all of a crypto's pending ranges start
-- after rolled_through, its changed bars are new bars later than everything in their buckets, and a
-- refresh merges them into the head's day and week rows, or adds rows for later ones, without re-reading
-- the buckets' bars (sql/aggregates/consume_and_merge_appends.sql). Written only by the refresh, on the
-- snapshot of the statement that changes the rollups; emptied with them by a rebuild. A crypto without a
-- row here has its buckets recomputed. Unused by TimescaleDB's native aggregates.
CREATE TABLE market.rollup_heads (
    crypto_id      integer PRIMARY KEY,
    rolled_through timestamptz NOT NULL
) WITH (fillfactor = 50);  -- every appended hour updates each crypto's row: room for HOT updates
