-- Every row of the dashboard, by crypto.
SELECT * FROM serving.crypto_dashboard_summary ORDER BY crypto_id;
