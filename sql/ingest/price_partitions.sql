-- The yearly partitions market.prices has now (empty when it is not a partitioned table, e.g. a hypertable).
SELECT child.relname
FROM pg_inherits
JOIN pg_class child ON child.oid = pg_inherits.inhrelid
JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
JOIN pg_namespace ns ON ns.oid = parent.relnamespace
WHERE ns.nspname = 'market' AND parent.relname = 'prices' AND parent.relkind = 'p';
