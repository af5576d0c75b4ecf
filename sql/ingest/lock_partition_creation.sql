-- Loads that create partitions of market.prices run one at a time; held until the load commits.
SELECT pg_advisory_xact_lock(%(key)s);
