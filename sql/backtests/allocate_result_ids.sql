-- Result ids for a COPY, drawn before it so curves and trades can reference them in the same pass.
SELECT nextval(pg_get_serial_sequence('backtest.results', 'result_id')) FROM generate_series(1, %(n)s);
