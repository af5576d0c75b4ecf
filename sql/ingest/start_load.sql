INSERT INTO market.loads (source, format, run_id, rows_read)
VALUES (%(source)s, %(format)s, %(run_id)s, %(rows_read)s)
RETURNING load_id;
