-- Whether market.prices is declaratively partitioned (not for a plain table or a TimescaleDB hypertable),
-- the names of the partitions it has now, and the worker tables of loads (prices_load_<load id>_<year>,
-- not attached) that exist now: those whose load no longer runs are left over from a crash.
SELECT parent.relkind = 'p',
       array(SELECT child.relname
             FROM pg_inherits
             JOIN pg_class child ON child.oid = pg_inherits.inhrelid
             WHERE pg_inherits.inhparent = parent.oid),
       array(SELECT worker.relname
             FROM pg_class worker
             WHERE worker.relnamespace = parent.relnamespace
               AND worker.relkind = 'r'
               AND NOT worker.relispartition
               AND worker.relname ~ '^prices_load_[0-9]+_[0-9]+$')
FROM pg_class parent
WHERE parent.oid = 'market.prices'::regclass;
