-- The crypto universe (assets/cryptos.csv), plus what loads learn about each crypto.
CREATE TABLE market.cryptos (
    crypto_id    integer PRIMARY KEY,
    symbol       text NOT NULL UNIQUE CHECK (symbol <> '' AND symbol = upper(symbol)),
    name         text NOT NULL,
    coingecko_id text UNIQUE,
    -- Set by the first load: one bar interval per crypto, so a daily file cannot overwrite hourly bars.
    bar_seconds  integer CHECK (bar_seconds > 0),
    -- Bumped by every load that changed this crypto's bars: caches key on it.
    data_version bigint NOT NULL DEFAULT 0,
    first_ts     timestamptz,
    last_ts      timestamptz,
    in_universe  boolean NOT NULL DEFAULT true,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
