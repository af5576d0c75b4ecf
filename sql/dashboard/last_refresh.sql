-- The newest dashboard refresh (NULL before the first: that one builds serving.crypto_extremes from scratch).
SELECT max(refresh_id) FROM serving.dashboard_refreshes;
