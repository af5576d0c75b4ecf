-- The recent-window partial indexes that exist now, with their table and whether they are valid.
SELECT i.relname AS index_name, t.oid::regclass::text AS table_name, x.indisvalid AS valid
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = i.relnamespace
WHERE n.nspname = 'market' AND i.relname ~ '_recent_\d{8}$';
