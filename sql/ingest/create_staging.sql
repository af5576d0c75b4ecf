-- Validated bars of one load, filled by binary COPY. Temporary: no WAL, gone at commit.
CREATE TEMPORARY TABLE staging_prices (
    crypto_id integer NOT NULL,
    ts        timestamptz NOT NULL,
    open      double precision NOT NULL,
    high      double precision NOT NULL,
    low       double precision NOT NULL,
    close     double precision NOT NULL,
    volume    double precision NOT NULL
) ON COMMIT DROP;
