-- Trades of results that are being replaced.
DELETE FROM backtest.trades WHERE result_id = ANY(%(result_ids)s::bigint[]);
