-- Held by a load's main transaction while its worker tables exist: a table whose load's lock is free
-- belongs to a load that has ended (committed, rolled back or crashed) and can be dropped.
SELECT pg_advisory_xact_lock(%(space)s, %(load_key)s);
