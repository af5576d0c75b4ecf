-- What tells this warehouse from any other, for the cache's key namespace: the cluster's system identifier
-- (new at every initdb) and the database's oid (new at every CREATE DATABASE, clones from a template included).
-- Both are readable by any role.
SELECT s.system_identifier, d.oid AS database_oid
FROM pg_control_system() s, pg_database d
WHERE d.datname = current_database();
