-- TimescaleDB: take the ranges a native refresh has just covered off the log (and record them), once
-- refresh_continuous_aggregate has recomputed their buckets.
WITH {consume_invalidations}
SELECT ranges_consumed, days_refreshed, weeks_refreshed FROM summary;
