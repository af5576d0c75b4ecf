-- Whether market.prices is declaratively partitioned (not for a plain table or a TimescaleDB hypertable),
-- and the names of the partitions it has now.
SELECT parent.relkind = 'p',
       array(SELECT child.relname
             FROM pg_inherits
             JOIN pg_class child ON child.oid = pg_inherits.inhrelid
             WHERE pg_inherits.inhparent = parent.oid)
FROM pg_class parent
WHERE parent.oid = 'market.prices'::regclass;
