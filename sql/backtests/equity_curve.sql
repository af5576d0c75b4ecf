-- One result's equity and drawdown per valid bar, for a chart.
SELECT ts, equity, drawdown FROM backtest.result_equity WHERE result_id = %(result_id)s ORDER BY ts;
