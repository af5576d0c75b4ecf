INSERT INTO serving.dashboard_refreshes
    (rebuilt, changes_applied, through_change_id, cryptos_rescanned, extremes_changed, summary_rows, milliseconds)
VALUES (%(rebuilt)s, %(changes_applied)s, %(through_change_id)s, %(cryptos_rescanned)s, %(extremes_changed)s,
        (SELECT count(*) FROM serving.crypto_dashboard_summary), %(milliseconds)s)
RETURNING refresh_id, summary_rows;
