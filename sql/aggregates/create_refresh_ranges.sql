-- The invalidation ranges one refresh works through, clipped to its window.
CREATE TEMPORARY TABLE refresh_ranges (
    crypto_id   integer NOT NULL,
    range_start timestamptz NOT NULL,
    range_end   timestamptz NOT NULL
) ON COMMIT DROP;
