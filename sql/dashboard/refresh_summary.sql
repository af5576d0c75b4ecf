-- Readers keep reading the previous rows until the refresh commits (CONCURRENTLY needs the unique index on
-- crypto_id); the view's query reads serving.crypto_extremes as this transaction left it.
REFRESH MATERIALIZED VIEW CONCURRENTLY serving.crypto_dashboard_summary;
