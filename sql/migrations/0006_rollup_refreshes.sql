-- One row per refresh, for metadata and for seeing what a refresh cost.
CREATE TABLE market.rollup_refreshes (
    refresh_id      bigserial PRIMARY KEY,
    started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    window_start    timestamptz NOT NULL,
    window_end      timestamptz NOT NULL,
    ranges_consumed integer NOT NULL,
    days_refreshed  integer NOT NULL,
    weeks_refreshed integer NOT NULL,
    ranges_pending  integer NOT NULL,
    milliseconds    double precision NOT NULL
);
