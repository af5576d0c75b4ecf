"""Backtests through the warehouse (cryptobt_pipelines.backtests): bars in, results, curves and trades out."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg
import pytest
from backtest_data import SYMBOLS, START, as_arrays, correct_one_bar, load_daily, rows
from test_rollups import scratch_warehouse, timescale_on

from cryptobt_pipelines import backtests
from cryptobt_pipelines.backtests import (
    BacktestSpec,
    backtest_cryptos,
    cryptos_to_backtest,
    params_from_text,
    plan_runs,
    resolve_symbols,
    run_batch,
)
from cryptobt_pipelines.engine import METRIC_NAMES, load_catalog, run_backtests
from cryptobt_pipelines.sources.batch import PriceBatch
from cryptobt_pipelines.warehouse.backtests import read_prices
from cryptobt_pipelines.warehouse.database import TIMESCALE, close_pools
from cryptobt_pipelines.warehouse.load import load_batch
from cryptobt_pipelines.warehouse.rollups import refresh_rollups

CATALOG = [s.name for s in load_catalog().strategies]
# The downstream contract (README, "Reading the backtest results"): a view losing or renaming a column fails here.
VIEW_COLUMNS = {
    "strategy_catalog": ["strategy_id", "strategy", "description", "parameters", "definition_hash", "updated_at"],
    "latest_results": ["crypto_id", "symbol", "strategy_id", "strategy", "params", "params_hash", "is_default",
                       "interval", "bar_seconds", "window_start", "window_end", "first_bar", "last_bar", "n_bars",
                       "data_version", *METRIC_NAMES, "result_id", "run_id", "computed_at"],
    "result_equity": ["result_id", "crypto_id", "symbol", "strategy", "params_hash", "is_default", "bar_seconds",
                      "ts", "equity", "drawdown"],
    "result_trades": ["result_id", "crypto_id", "symbol", "strategy", "params_hash", "is_default", "bar_seconds",
                      "trade_no", "entry_ts", "exit_ts", "entry_price", "exit_price", "units", "pnl", "return",
                      "is_open"],
    "run_log": ["run_id", "dagster_run_id", "strategy", "param_sets", "params_hash", "interval", "window_start",
                "window_end", "n_cryptos", "n_param_sets", "engine_version", "started_at", "finished_at", "load_ms",
                "engine_ms", "write_ms"],
}


def counts(url):
    return rows(url, "SELECT (SELECT count(*) FROM backtest.results), (SELECT count(*) FROM backtest.equity), "
                     "(SELECT count(*) FROM backtest.trades), (SELECT count(*) FROM backtest.runs)")[0]


def stored(url, symbol, strategy, params_hash=None):
    sql = ("SELECT * FROM backtest.latest_results WHERE symbol = %s AND strategy = %s AND "
           + ("params_hash = %s" if params_hash else "is_default"))
    with __import__("psycopg").connect(url) as conn:
        cursor = conn.execute(sql, [symbol, strategy, *([params_hash] if params_hash else [])])
        return [dict(zip([d.name for d in cursor.description], row)) for row in cursor.fetchall()]


def test_stored_results_equal_a_direct_engine_call_on_the_same_bars(warehouse_url):
    batch = load_daily(warehouse_url)

    report = run_batch(warehouse_url, SYMBOLS, plan_runs())

    assert report.backtests_computed == len(SYMBOLS) * len(CATALOG) and report.backtests_skipped == 0
    arrays, stamps = as_arrays(batch, SYMBOLS)
    for strategy in CATALOG:
        direct = run_backtests(strategy, *arrays, timestamps=stamps, equity=True, trades=True)
        for column, symbol in enumerate(SYMBOLS):
            [row] = stored(warehouse_url, symbol, strategy)
            assert {m: row[m] for m in METRIC_NAMES} == {m: direct.metrics[m][column, 0] for m in METRIC_NAMES}
            curve = rows(warehouse_url, "SELECT equity FROM backtest.result_equity WHERE result_id = %s ORDER BY ts",
                         [row["result_id"]])
            expected = direct.equity[column, 0]
            assert [c[0] for c in curve] == expected[~np.isnan(expected)].tolist()
            trades = rows(warehouse_url, "SELECT entry_ts, entry_price, exit_price, units, pnl, is_open "
                                         "FROM backtest.result_trades WHERE result_id = %s ORDER BY trade_no",
                          [row["result_id"]])
            mine = direct.trades[direct.trades["crypto"] == column]
            assert [(t[1], t[2], t[3], t[4], t[5]) for t in trades] == [
                (t["entry_price"], t["exit_price"], t["units"], t["pnl"], bool(t["is_open"])) for t in mine]
            assert [t[0] for t in trades] == [pd.Timestamp(stamps[b], tz=UTC) for b in mine["entry_bar"]]


@pytest.mark.parametrize("backend", ["portable", TIMESCALE])
def test_both_backends_store_the_same_results_and_skip_what_did_not_change(server_url, template_database, backend):
    if backend == TIMESCALE and not timescale_on(server_url):
        pytest.skip("the timescaledb extension is not installed and preloaded on the test server")
    with scratch_warehouse(server_url, template_database, backend) as url:
        batch = load_daily(url, SYMBOLS[:2], days=200)
        assert run_batch(url, SYMBOLS[:2], plan_runs(["sma_cross", "dca"])).backtests_computed == 4
        assert run_batch(url, SYMBOLS[:2], plan_runs(["sma_cross", "dca"])).backtests_computed == 0

        arrays, stamps = as_arrays(batch, SYMBOLS[:2])
        direct = run_backtests("dca", *arrays, timestamps=stamps)
        stored_values = rows(url, "SELECT final_value FROM backtest.latest_results WHERE strategy = 'dca' "
                                  "ORDER BY array_position(%s, symbol)", [SYMBOLS[:2]])
        assert [v for v, in stored_values] == direct.metrics["final_value"][:, 0].tolist()
        close_pools()  # pooled sessions would keep the scratch database from being dropped


def test_on_timescaledb_compressed_rollups_read_the_same_bars_compressed_per_crypto(server_url, template_database):
    if not timescale_on(server_url):
        pytest.skip("the timescaledb extension is not installed and preloaded on the test server")
    with scratch_warehouse(server_url, template_database, TIMESCALE) as url:
        load_daily(url, SYMBOLS, days=400)
        ids = [c.crypto_id for c in resolve_symbols(SYMBOLS, url)]
        before = read_prices(url, ids, 86_400)
        with psycopg.connect(url, autocommit=True) as conn:
            # What the compression policy does to old chunks in the background.
            compressed = conn.execute("SELECT count(compress_chunk(c, if_not_compressed => true)) "
                                      "FROM show_chunks('market.prices_daily') c").fetchone()[0]
            segmented_by = conn.execute(
                "SELECT array_agg(s.attname::text) FROM timescaledb_information.continuous_aggregates a "
                "JOIN timescaledb_information.compression_settings s ON s.hypertable_schema = "
                "a.materialization_hypertable_schema AND s.hypertable_name = a.materialization_hypertable_name "
                "WHERE a.view_name = 'prices_daily' AND s.segmentby_column_index IS NOT NULL").fetchone()[0]
        after = read_prices(url, ids, 86_400)
        assert compressed >= 1 and segmented_by == ["crypto_id"]  # a crypto's read decompresses its bars only
        assert np.array_equal(after.timestamps, before.timestamps)
        for ours, theirs in zip(after.ohlc, before.ohlc):
            assert np.array_equal(ours, theirs, equal_nan=True)
        close_pools()  # pooled sessions would keep the scratch database from being dropped


def test_bars_are_read_in_one_snapshot_onto_one_grid(warehouse_url):
    batch = load_daily(warehouse_url)
    ids = [c.crypto_id for c in resolve_symbols(SYMBOLS, warehouse_url)]

    prices = read_prices(warehouse_url, ids, 86_400)

    arrays, stamps = as_arrays(batch, SYMBOLS)
    assert [c.symbol for c in prices.cryptos] == SYMBOLS
    assert np.array_equal(prices.timestamps, stamps.astype("datetime64[us]"))
    for ours, theirs in zip(prices.ohlc, arrays):
        assert np.array_equal(ours, theirs, equal_nan=True)
    assert all(c.data_version == 1 and not c.rollup_pending for c in prices.cryptos)


def test_a_rerun_replaces_results_curves_and_trades_instead_of_adding_them(warehouse_url):
    load_daily(warehouse_url)
    run_batch(warehouse_url, SYMBOLS, plan_runs())
    results, curves, trades, runs = counts(warehouse_url)
    first_ids = rows(warehouse_url, "SELECT array_agg(result_id) FROM backtest.results")[0][0]

    report = run_batch(warehouse_url, SYMBOLS, plan_runs(), force=True)

    assert report.write.replaced == results
    assert counts(warehouse_url) == (results, curves, trades, runs + len(CATALOG))  # runs are the history
    assert not set(first_ids) & set(rows(warehouse_url, "SELECT array_agg(result_id) FROM backtest.results")[0][0])
    assert rows(warehouse_url, "SELECT count(*) FROM backtest.trades t WHERE NOT EXISTS "
                               "(SELECT 1 FROM backtest.results r WHERE r.result_id = t.result_id)") == [(0,)]


def test_results_of_former_defaults_stay_but_lose_the_default_mark(warehouse_url):
    load_daily(warehouse_url, SYMBOLS[:2])
    run_batch(warehouse_url, SYMBOLS[:2], plan_runs(["sma_cross"]))
    # As if the catalog's defaults had been others when this result was computed.
    rows(warehouse_url, "INSERT INTO backtest.results (run_id, crypto_id, strategy_id, params, params_hash, is_default, "
                        "bar_seconds, n_bars, data_version, rollup_pending, final_value, total_return, cagr, sharpe, "
                        "sortino, max_drawdown, calmar, win_rate, profit_factor, n_trades, exposure) "
                        "SELECT run_id, crypto_id, strategy_id, params, 'former-defaults', true, bar_seconds, n_bars, "
                        "data_version, rollup_pending, final_value, total_return, cagr, sharpe, sortino, max_drawdown, "
                        "calmar, win_rate, profit_factor, n_trades, exposure FROM backtest.results RETURNING 1")

    run_batch(warehouse_url, SYMBOLS[:2], plan_runs(["sma_cross"]), force=True)

    assert rows(warehouse_url, "SELECT params_hash = 'former-defaults', count(*) FROM backtest.latest_results "
                               "WHERE is_default GROUP BY 1") == [(False, 2)]
    assert rows(warehouse_url, "SELECT count(*) FROM backtest.results") == [(4,)]


def test_unchanged_inputs_are_skipped_and_a_new_data_version_recomputes_only_its_crypto(warehouse_url):
    batch = load_daily(warehouse_url)
    run_batch(warehouse_url, SYMBOLS, plan_runs())
    before = counts(warehouse_url)

    again = run_batch(warehouse_url, SYMBOLS, plan_runs())
    assert again.backtests_computed == 0 and again.backtests_skipped == len(SYMBOLS) * len(CATALOG)
    assert again.write is None and counts(warehouse_url) == before
    assert cryptos_to_backtest(warehouse_url, SYMBOLS, plan_runs()) == []

    correct_one_bar(warehouse_url, batch, "SOL")
    refresh_rollups(warehouse_url)
    assert cryptos_to_backtest(warehouse_url, SYMBOLS, plan_runs()) == ["SOL"]
    changed = run_batch(warehouse_url, SYMBOLS, plan_runs())

    sol = resolve_symbols(["SOL"], warehouse_url)[0]
    assert changed.computed == {sol.crypto_id: len(CATALOG)}
    assert changed.backtests_skipped == (len(SYMBOLS) - 1) * len(CATALOG)
    assert {r["data_version"] for r in stored(warehouse_url, "SOL", "sma_cross")} == {sol.data_version} == {2}
    assert counts(warehouse_url)[:3] == before[:3]


def test_results_read_while_the_rollup_lags_are_recomputed_once_it_caught_up(warehouse_url):
    batch = load_daily(warehouse_url)
    correct_one_bar(warehouse_url, batch, "ETH")  # the daily rollup has not seen it yet
    ids = [c.crypto_id for c in resolve_symbols(["ETH", "BTC"], warehouse_url)]
    assert [r.settled for r in backtest_cryptos("dca", ids)] == [False, True]  # not for a cache

    first = run_batch(warehouse_url, SYMBOLS, plan_runs())
    assert rows(warehouse_url, "SELECT crypto_id, bool_and(rollup_pending) FROM backtest.results "
                               "GROUP BY crypto_id HAVING bool_or(rollup_pending)") == [(ids[0], True)]
    second = run_batch(warehouse_url, SYMBOLS, plan_runs())
    refresh_rollups(warehouse_url)
    third = run_batch(warehouse_url, SYMBOLS, plan_runs())
    fourth = run_batch(warehouse_url, SYMBOLS, plan_runs())

    eth = resolve_symbols(["ETH"], warehouse_url)[0].crypto_id
    assert first.backtests_computed == len(SYMBOLS) * len(CATALOG)
    assert second.computed == third.computed == {eth: len(CATALOG)}
    assert fourth.backtests_computed == 0


def test_another_engine_version_or_window_is_not_current(warehouse_url, monkeypatch):
    load_daily(warehouse_url)
    run_batch(warehouse_url, SYMBOLS, plan_runs(["sma_cross"]))

    monkeypatch.setattr(backtests, "engine_version", lambda: "another-engine")
    assert run_batch(warehouse_url, SYMBOLS, plan_runs(["sma_cross"])).backtests_computed == len(SYMBOLS)
    windowed = run_batch(warehouse_url, SYMBOLS, plan_runs(["sma_cross"], start=START + timedelta(days=100)))

    assert windowed.backtests_computed == len(SYMBOLS)
    assert rows(warehouse_url, "SELECT count(DISTINCT window_start IS NULL) FROM backtest.results") == [(2,)]
    assert counts(warehouse_url)[0] == 2 * len(SYMBOLS)


def test_grids_store_metrics_for_every_set_and_curves_for_the_defaults(warehouse_url):
    load_daily(warehouse_url)
    plan = plan_runs(["sma_cross"], {"sma_cross": {"fast_window": [5, 20], "slow_window": [30, 50]}})
    assert [(len(p.spec.param_sets), p.curves) for p in plan] == [(1, True), (3, False)]  # 20/50 is the default

    run_batch(warehouse_url, SYMBOLS, plan)

    assert rows(warehouse_url, "SELECT count(*), count(*) FILTER (WHERE is_default), count(e.result_id) "
                               "FROM backtest.results LEFT JOIN backtest.equity e USING (result_id)") == [
        (4 * len(SYMBOLS), len(SYMBOLS), len(SYMBOLS))]
    with pytest.raises(ValueError, match="fast_window=60 must be below slow_window=50"):
        plan_runs(["sma_cross"], {"sma_cross": {"fast_window": [60]}})
    with pytest.raises(ValueError, match="grids for strategies that are not run"):
        plan_runs(["dca"], {"sma_cross": {"fast_window": [5]}})


def test_views_have_the_documented_columns(warehouse_url):
    for view, columns in VIEW_COLUMNS.items():
        found = rows(warehouse_url, "SELECT column_name FROM information_schema.columns "
                                    "WHERE table_schema = 'backtest' AND table_name = %s ORDER BY ordinal_position",
                     [view])
        assert [c[0] for c in found] == columns, view


def test_equity_view_drawdown_reaches_the_stored_max_drawdown(warehouse_url):
    load_daily(warehouse_url)
    run_batch(warehouse_url, SYMBOLS, plan_runs())

    check = rows(warehouse_url, """
        SELECT r.max_drawdown, min(e.drawdown), max(e.ts) = r.last_bar, min(e.ts) = r.first_bar, count(*) = r.n_bars
        FROM backtest.latest_results r JOIN backtest.result_equity e USING (result_id)
        GROUP BY r.result_id, r.max_drawdown, r.last_bar, r.first_bar, r.n_bars""")
    assert len(check) == len(SYMBOLS) * len(CATALOG)
    for max_drawdown, lowest, *same in check:
        assert lowest == pytest.approx(max_drawdown, abs=1e-12) and all(same)
    catalog = rows(warehouse_url, "SELECT strategy_id, strategy FROM backtest.strategy_catalog ORDER BY strategy_id")
    assert catalog == [(s.id, s.name) for s in load_catalog().strategies]


def test_on_demand_results_do_not_depend_on_the_other_cryptos_asked(warehouse_url):
    load_daily(warehouse_url)
    ids = [c.crypto_id for c in resolve_symbols(SYMBOLS, warehouse_url)]

    together = backtest_cryptos("ema_cross", ids, {"fast_window": 5}, equity=True, trades=True)
    alone = backtest_cryptos("ema_cross", [ids[2]], {"fast_window": 5}, equity=True, trades=True)

    assert [r.symbol for r in together] == SYMBOLS
    assert together[2].metrics == alone[0].metrics
    assert together[2].equity.equals(alone[0].equity) and together[2].trades.equals(alone[0].trades)
    assert alone[0].n_bars == len(alone[0].equity) and alone[0].settled and alone[0].data_version == 1
    assert alone[0].as_dict()["params"]["fast_window"] == 5 and alone[0].as_dict()["symbol"] == SYMBOLS[2]


def test_on_demand_window_is_whole_days_and_end_day_included(warehouse_url):
    batch = load_daily(warehouse_url)
    btc = resolve_symbols(["btc"], warehouse_url)[0].crypto_id
    first, last = START + timedelta(days=30), START + timedelta(days=59)

    [result] = backtest_cryptos("buy_and_hold", [btc], start=first.date(), end=last.date())

    bars = batch.bars[(batch.bars["symbol"] == "BTC") & batch.bars["ts"].between(first, last)]
    assert (result.first_bar, result.last_bar) == (bars["ts"].min(), bars["ts"].max())
    assert result.n_bars == len(bars) > 20


def test_hourly_bars_and_the_day_still_forming(warehouse_url):
    start = datetime(2024, 3, 1, tzinfo=UTC)
    hourly = pd.DataFrame({"line": range(1, 61), "symbol": "DOGE", "ts": [start + timedelta(hours=h) for h in range(60)],
                           "open": 1.0, "high": 2.0, "low": 0.9, "close": [1.0 + 0.01 * h for h in range(60)],
                           "volume": 1.0})
    load_batch(PriceBatch("test", "test", hourly, bar_seconds=3600), url=warehouse_url)
    refresh_rollups(warehouse_url)
    doge = resolve_symbols(["DOGE"], warehouse_url)[0].crypto_id

    [daily] = backtest_cryptos("buy_and_hold", [doge])
    [per_hour] = backtest_cryptos("buy_and_hold", [doge], interval="1h")

    assert daily.n_bars == 2 and daily.last_bar == start + timedelta(days=1)  # day 3 has 12 of 24 hours
    assert per_hour.n_bars == 60
    arrays = [hourly[f].to_numpy().reshape(-1, 1) for f in ("open", "high", "low", "close")]
    direct = run_backtests("buy_and_hold", *arrays, bar_seconds=3600)
    assert per_hour.metrics["final_value"] == direct.metrics["final_value"][0, 0]
    assert per_hour.metrics["sharpe"] == direct.metrics["sharpe"][0, 0]


def test_hourly_backtests_refuse_cryptos_without_hourly_bars(warehouse_url):
    load_daily(warehouse_url, ["BTC"])
    btc = resolve_symbols(["BTC"], warehouse_url)[0].crypto_id

    with pytest.raises(ValueError, match=r"no hourly bars for BTC \(86400 s\)"):
        backtest_cryptos("sma_cross", [btc], interval="1h")


@pytest.mark.parametrize(("call", "message"), [
    (lambda: BacktestSpec.build("nope"), "no strategy 'nope' in the catalog"),
    (lambda: BacktestSpec.build("sma_cross", [{"speed": 3}]), r"unknown parameters \['speed'\]"),
    (lambda: BacktestSpec.build("sma_cross", [{"fast_window": 2.5}]), "expected an integer"),
    (lambda: BacktestSpec.build("sma_cross", interval="5m"), "interval must be one of"),
    (lambda: BacktestSpec.build("dca", start=datetime(2024, 2, 1), end=datetime(2024, 1, 1)), "is not before"),
    (lambda: params_from_text("sma_cross", ["fast_window"]), "expected NAME=VALUE"),
    (lambda: params_from_text("sma_cross", ["fee=cheap"]), r"fee='cheap': expected a number"),
    (lambda: params_from_text("sma_cross", ["fee=0.1", "fee=0.2"]), "given twice"),
])
def test_bad_input_is_refused_with_a_message_naming_it(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_unknown_symbols_are_named(warehouse_url):
    with pytest.raises(ValueError, match="unknown symbols: NOPE, ZZZ"):
        resolve_symbols(["BTC", "nope", "ZZZ"], warehouse_url)
