-- TimescaleDB is installed and preloaded (CREATE EXTENSION without preloading ends the session).
SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
       AND current_setting('shared_preload_libraries') LIKE '%%timescaledb%%';
