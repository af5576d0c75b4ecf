CREATE TEMPORARY TABLE staging_rejects (
    line   bigint NOT NULL,
    symbol text,
    ts     timestamptz,
    open   double precision,
    high   double precision,
    low    double precision,
    close  double precision,
    volume double precision,
    rule   text NOT NULL,
    reason text NOT NULL,
    raw    text
) ON COMMIT DROP;
