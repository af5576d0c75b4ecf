-- The bookkeeping of loads: what each load did, what it refused, and which bar ranges it changed.

-- One row per committed load, whatever its source.
CREATE TABLE market.loads (
    load_id         bigserial PRIMARY KEY,
    source          text NOT NULL,
    format          text NOT NULL,
    run_id          text,
    started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at     timestamptz,
    rows_read       bigint NOT NULL DEFAULT 0,
    rows_inserted   bigint NOT NULL DEFAULT 0,
    rows_updated    bigint NOT NULL DEFAULT 0,
    rows_unchanged  bigint NOT NULL DEFAULT 0,
    rows_collapsed  bigint NOT NULL DEFAULT 0,
    rows_rejected   bigint NOT NULL DEFAULT 0,
    min_ts          timestamptz,
    max_ts          timestamptz
);

-- Every row a load refused, with where it came from and why. A re-load of the same source refreshes
-- its rows instead of repeating them.
CREATE TABLE market.rejected_prices (
    rejected_id bigserial PRIMARY KEY,
    load_id     bigint NOT NULL REFERENCES market.loads (load_id),
    source      text NOT NULL,
    line        bigint NOT NULL,
    symbol      text,
    ts          timestamptz,
    open        double precision,
    high        double precision,
    low         double precision,
    close       double precision,
    volume      double precision,
    rule        text NOT NULL,
    reason      text NOT NULL,
    raw         text,
    rejected_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT rejected_prices_source_line_reason UNIQUE (source, line, reason)
);

-- The invalidation log: the [range_start, range_end] of bar open times each load changed, per crypto,
-- written in the load's own transaction. Rollups and caches consume it; it is never edited by loads.
CREATE TABLE market.invalidations (
    invalidation_id bigserial PRIMARY KEY,
    crypto_id       integer NOT NULL,
    range_start     timestamptz NOT NULL,
    range_end       timestamptz NOT NULL,
    load_id         bigint NOT NULL REFERENCES market.loads (load_id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (range_start <= range_end)
);
CREATE INDEX invalidations_crypto_id ON market.invalidations (crypto_id, invalidation_id);
