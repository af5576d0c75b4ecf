-- The stored default-parameter results of a batch's cryptos for its window and interval, computed now or
-- earlier and still current: the run's leaderboard and each partition's summary.
SELECT c.symbol, s.name AS strategy, r.result_id, r.crypto_id, r.data_version, r.total_return, r.cagr,
       r.sharpe, r.sortino, r.max_drawdown, r.calmar, r.win_rate, r.n_trades, r.exposure, r.final_value,
       r.first_bar, r.last_bar, r.computed_at
FROM backtest.results r
JOIN market.cryptos c USING (crypto_id)
JOIN backtest.strategies s USING (strategy_id)
WHERE r.crypto_id = ANY(%(crypto_ids)s::integer[])
  AND r.strategy_id = ANY(%(strategy_ids)s::integer[])
  AND r.is_default
  AND r.bar_seconds = %(bar_seconds)s
  AND r.window_start IS NOT DISTINCT FROM %(window_start)s::timestamptz
  AND r.window_end IS NOT DISTINCT FROM %(window_end)s::timestamptz;
