-- True when the load is not running (nobody holds its lock, lock_load.sql); then held until this
-- transaction ends, so two loads do not both drop its leftover tables.
SELECT pg_try_advisory_xact_lock(%(space)s, %(load_key)s);
