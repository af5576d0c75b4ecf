-- The tables that carry a "recent window" partial index: the daily rollup (a table, or the hypertable a
-- continuous aggregate materializes into) and every partition of market.prices that reaches into the window.
-- Returns the table, the time column, the index name prefix and whether it can be built CONCURRENTLY.
SELECT 'market.prices_daily'::regclass::text AS table_name, 'bucket' AS time_column,
       'prices_daily_recent' AS prefix, c.relkind = 'r' AS concurrently
FROM pg_class c WHERE c.oid = 'market.prices_daily'::regclass AND c.relkind = 'r'
UNION ALL
SELECT format('%%I.%%I', n.nspname, child.relname), 'ts', child.relname || '_recent', true
FROM pg_inherits i
JOIN pg_class child ON child.oid = i.inhrelid
JOIN pg_namespace n ON n.oid = child.relnamespace
WHERE i.inhparent = 'market.prices'::regclass
  AND (regexp_match(child.relname, '^prices_(\d{4})$'))[1]::int >= extract(year FROM %(cutoff)s::timestamptz);
