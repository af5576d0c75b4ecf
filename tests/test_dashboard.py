"""The dashboard view equals a pandas computation from the raw bars, however loads, corrections and refreshes
interleave; readers never see an error or a half-refreshed view."""

import threading
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql as pgsql
from dashboard_expected import assert_dashboard_matches, dashboard, frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_rollups import scratch_warehouse, timescale_on

from cryptobt_pipelines.cli import main
from cryptobt_pipelines.sources.batch import PriceBatch
from cryptobt_pipelines.warehouse import dashboard as dashboard_module
from cryptobt_pipelines.warehouse.dashboard import compare_with_live, refresh_dashboard
from cryptobt_pipelines.warehouse.database import TIMESCALE, close_pools
from cryptobt_pipelines.warehouse.load import load_batch
from cryptobt_pipelines.warehouse.rollups import rebuild_rollups, refresh_rollups

HOUR = timedelta(hours=1)
END = datetime(2024, 3, 20, 14, tzinfo=UTC)


def bars(symbol: str, times, close, high=None, low=None, volume=None) -> PriceBatch:
    close = np.broadcast_to(np.asarray(close, dtype=float), (len(times),))
    high = close * 1.01 if high is None else np.broadcast_to(np.asarray(high, dtype=float), close.shape)
    low = close * 0.99 if low is None else np.broadcast_to(np.asarray(low, dtype=float), close.shape)
    volume = np.arange(1, len(times) + 1) * 0.37 if volume is None else volume
    rows = pd.DataFrame({"line": range(1, len(times) + 1), "symbol": symbol, "ts": list(times), "open": close,
                         "high": high, "low": low, "close": close, "volume": volume})
    return PriceBatch("test", "test", rows, bar_seconds=3600)


def hours(start: datetime, end: datetime) -> list[datetime]:
    """Hourly bar times from start through end."""
    return [start + HOUR * h for h in range(int((end - start) / HOUR) + 1)]


def path(times) -> np.ndarray:
    """A wavy, drifting price: every bar differs, so a wrong bar shows."""
    h = np.array([(t - END) / HOUR for t in times])
    return 100 + 10 * np.sin(h / 7) + 0.01 * h


def refresh(url):
    refresh_rollups(url)
    return refresh_dashboard(url)


def by_symbol(url) -> dict:
    return {row["symbol"]: row for row in dashboard(url).to_dict("records")}


def execute(url, sql, params=None):
    with psycopg.connect(url) as conn:
        conn.execute(sql, params)


# --- every column on hand-made edge cases --------------------------------------------------------------------

LINK_AS_OF = datetime(2024, 3, 20, tzinfo=UTC)  # a bar exactly at midnight


def load_edge_cases(url):
    """One crypto per edge case; see the assertions in the test below for what each one shows."""
    gappy = [t for t in hours(END - timedelta(days=40), END)
             if not (END - timedelta(days=5) <= t < END - timedelta(days=2)) and t.hour % 5 != 3]
    load_batch(bars("BTC", gappy, path(gappy)), url=url)
    delisted = hours(END - timedelta(days=60), END - timedelta(days=12, hours=3))
    load_batch(bars("ETH", delisted, path(delisted) * 20), url=url)
    load_batch(bars("SOL", [END - 3 * HOUR], 42.0), url=url)
    missing_day_ago = [t for t in hours(END - timedelta(days=3), END) if t != END - timedelta(hours=24)]
    load_batch(bars("ADA", missing_day_ago, path(missing_day_ago) / 100), url=url)
    load_batch(bars("XRP", hours(END - 9 * HOUR, END), 0.5), url=url)
    # Ties: the same all-time high on days 3 and 12, the same low on days 6 and 15 (and twice on day 6).
    flat = hours(END - timedelta(days=20), END)
    high, low = np.full(len(flat), 10.5), np.full(len(flat), 9.5)
    for day, hour, value, column in ((3, 10, 20.0, high), (12, 5, 20.0, high), (6, 2, 5.0, low), (6, 20, 5.0, low),
                                     (15, 0, 5.0, low)):
        column[flat.index(END - timedelta(days=20) + timedelta(days=day, hours=hour - 14))] = value
    load_batch(bars("DOGE", flat, 10.0, high, low), url=url)
    # Around UTC midnight: the 7-day window starts on 03-14 00:00, the 30-day one on 02-20 00:00.
    link_times = [datetime(2024, 2, 19, 23, tzinfo=UTC), datetime(2024, 2, 20, 0, tzinfo=UTC),
                  datetime(2024, 3, 13, 23, tzinfo=UTC), datetime(2024, 3, 14, 0, tzinfo=UTC),
                  datetime(2024, 3, 18, 23, tzinfo=UTC), datetime(2024, 3, 19, 0, tzinfo=UTC),
                  datetime(2024, 3, 19, 1, tzinfo=UTC), datetime(2024, 3, 19, 23, tzinfo=UTC), LINK_AS_OF]
    link_close = [30.0, 11.0, 40.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0]
    load_batch(bars("LINK", link_times, link_close, volume=[1000.0, 1, 100, 2, 3, 4, 5, 6, 7]), url=url)
    dot = hours(END - timedelta(days=15), END)
    dot_high = path(dot) * 1.01
    dot_high[dot.index(END - timedelta(days=10))] = 500.0  # the all-time high, corrected below
    dot_high[dot.index(END - timedelta(days=6, hours=2))] = 400.0
    load_batch(bars("DOT", dot, path(dot), dot_high), url=url)
    load_batch(bars("AVAX", hours(END - 48 * HOUR, END), 30.0), url=url)
    execute(url, "UPDATE market.cryptos SET in_universe = false WHERE symbol = 'AVAX'")  # left the universe


def test_every_column_on_edge_cases_equals_pandas_before_and_after_a_correction(warehouse_url):
    load_edge_cases(warehouse_url)

    first = refresh(warehouse_url)

    assert first.rebuilt  # the first refresh of a warehouse builds the extremes from the whole rollup
    assert_dashboard_matches(warehouse_url)
    rows = by_symbol(warehouse_url)
    # No AVAX (it left the universe), no LTC (no bars).
    assert set(rows) == {"BTC", "ETH", "SOL", "ADA", "XRP", "DOGE", "LINK", "DOT"}
    sol = rows["SOL"]
    assert sol["price_24h_ago"] is None and sol["change_24h_percent"] is None
    assert sol["ath"] == sol["high_7d"] == sol["high_30d"] == 42.0 * 1.01
    assert sol["ath_date"] == sol["atl_date"] == date(2024, 3, 20)
    assert rows["XRP"]["price_24h_ago"] is None  # nine hours of history: no bar 24 h back
    assert rows["ADA"]["price_24h_ago"] == path([END - timedelta(hours=25)])[0] / 100  # the 24 h-ago bar is missing
    assert rows["ETH"]["as_of"] == END - timedelta(days=12, hours=3)  # delisted: its own latest bar
    assert (rows["DOGE"]["ath"], rows["DOGE"]["ath_date"]) == (20.0, date(2024, 3, 3))  # tie: the earlier day
    assert (rows["DOGE"]["atl"], rows["DOGE"]["atl_date"]) == (5.0, date(2024, 3, 6))
    link = rows["LINK"]
    assert link["as_of"] == LINK_AS_OF and link["price_24h_ago"] == 14.0
    assert link["high_7d"] == 17.0 * 1.01 and link["low_7d"] == 12.0 * 0.99 and link["volume_7d"] == 27.0
    assert link["high_30d"] == 40.0 * 1.01 and link["volume_30d"] == 27.0 + 100 + 1
    assert (link["ath"], link["ath_date"]) == (40.0 * 1.01, date(2024, 3, 13))
    assert rows["DOT"]["ath"] == 500.0

    # A correction lowers DOT's all-time high; BTC and XRP get a new hour.
    load_batch(bars("DOT", [END - timedelta(days=10)], 100.0), url=warehouse_url)
    load_batch(bars("BTC", [END + HOUR], 150.0), url=warehouse_url)
    load_batch(bars("XRP", [END + 15 * HOUR], 0.25), url=warehouse_url)
    load_batch(bars("DOGE", [END + HOUR], 10.0, 20.0, 5.0), url=warehouse_url)  # ties again, later: dates stay
    second = refresh(warehouse_url)

    assert not second.rebuilt and second.cryptos_rescanned == 1  # only DOT: its stored high was corrected
    assert second.extremes_changed == ["BTC", "DOT", "XRP"]
    assert_dashboard_matches(warehouse_url)
    rows = by_symbol(warehouse_url)
    assert (rows["DOT"]["ath"], rows["DOT"]["ath_date"]) == (400.0, date(2024, 3, 14))
    assert rows["XRP"]["price_24h_ago"] == 0.5 and rows["XRP"]["change_24h_percent"] == -50.0


def test_a_crypto_with_bars_gets_its_row_with_the_refresh_that_follows(warehouse_url):
    load_batch(bars("BTC", hours(END - 30 * HOUR, END), 10.0), url=warehouse_url)
    refresh(warehouse_url)
    load_batch(bars("ETH", hours(END - 30 * HOUR, END), 20.0), url=warehouse_url)
    assert set(by_symbol(warehouse_url)) == {"BTC"}  # not before the rollups and the dashboard have refreshed

    refresh(warehouse_url)

    assert set(by_symbol(warehouse_url)) == {"BTC", "ETH"}
    assert_dashboard_matches(warehouse_url)


def test_leaving_the_universe_takes_the_row_off_at_the_next_refresh(warehouse_url):
    load_batch(bars("BTC", hours(END - 30 * HOUR, END), 10.0), url=warehouse_url)
    load_batch(bars("ETH", hours(END - 30 * HOUR, END), 20.0), url=warehouse_url)
    refresh(warehouse_url)
    execute(warehouse_url, "UPDATE market.cryptos SET in_universe = false WHERE symbol = 'ETH'")

    refresh_dashboard(warehouse_url)

    assert set(by_symbol(warehouse_url)) == {"BTC"}


def test_a_refresh_with_nothing_pending_changes_nothing(warehouse_url):
    load_batch(bars("BTC", hours(END - 50 * HOUR, END), path(hours(END - 50 * HOUR, END))), url=warehouse_url)
    refresh(warehouse_url)
    before = dashboard(warehouse_url)

    again = refresh(warehouse_url)

    assert (again.changes_applied, again.cryptos_rescanned, again.extremes_changed) == (0, 0, [])
    assert dashboard(warehouse_url).equals(before)


def test_several_rollup_refreshes_are_applied_by_one_dashboard_refresh(warehouse_url):
    times = hours(END - 10 * 24 * HOUR, END)
    load_batch(bars("BTC", times, path(times)), url=warehouse_url)
    refresh(warehouse_url)
    for k in range(1, 4):  # ingests and rollup refreshes the dashboard has not seen
        load_batch(bars("BTC", [END + k * HOUR], 200.0 + k), url=warehouse_url)
        refresh_rollups(warehouse_url)
    load_batch(bars("BTC", [END - 9 * 24 * HOUR], 1.0), url=warehouse_url)  # an old bar corrected down: a new low
    refresh_rollups(warehouse_url)

    report = refresh_dashboard(warehouse_url)

    assert report.changes_applied == 4 and report.extremes_changed == ["BTC"]
    assert_dashboard_matches(warehouse_url)
    assert frame(warehouse_url, "SELECT count(*) AS n FROM market.rollup_changes")["n"][0] == 0


def an_hour_the_dashboard_has_not_seen(url):
    """BTC's two days on the dashboard, then an hour at 999 that the rollups have taken in, the dashboard not."""
    times = hours(END - 48 * HOUR, END)
    load_batch(bars("BTC", times, path(times)), url=url)
    refresh(url)
    load_batch(bars("BTC", [END + HOUR], 999.0), url=url)
    refresh_rollups(url)


def test_a_refresh_that_dies_leaves_extremes_view_and_change_log_as_they_were(warehouse_url, monkeypatch):
    an_hour_the_dashboard_has_not_seen(warehouse_url)
    extremes = frame(warehouse_url, "SELECT * FROM serving.crypto_extremes")
    view = dashboard(warehouse_url)

    original = dashboard_module.query
    monkeypatch.setattr(dashboard_module, "query",
                        lambda name: "SELECT 1/0" if name == "dashboard/refresh_summary" else original(name))
    with pytest.raises(psycopg.errors.DivisionByZero):
        refresh_dashboard(warehouse_url)

    assert frame(warehouse_url, "SELECT * FROM serving.crypto_extremes").equals(extremes)
    assert dashboard(warehouse_url).equals(view)
    assert frame(warehouse_url, "SELECT count(*) AS n FROM market.rollup_changes")["n"][0] == 1
    monkeypatch.undo()
    refresh_dashboard(warehouse_url)
    assert_dashboard_matches(warehouse_url)


def test_rebuild_recomputes_what_the_incremental_path_maintains(warehouse_url):
    times = hours(END - 20 * 24 * HOUR, END)
    load_batch(bars("BTC", times, path(times)), url=warehouse_url)
    load_batch(bars("ETH", times, path(times) * 3), url=warehouse_url)
    refresh(warehouse_url)
    execute(warehouse_url, "UPDATE serving.crypto_extremes SET ath = ath * 2, atl_day = atl_day - interval '24 hours'")
    refresh_dashboard(warehouse_url)
    assert compare_with_live(warehouse_url).mismatched  # drifted: nothing incremental touches it

    report = refresh_dashboard(warehouse_url, rebuild=True)

    assert report.rebuilt and sorted(report.extremes_changed) == ["BTC", "ETH"]
    assert_dashboard_matches(warehouse_url)


def test_cli_refresh_rebuild_leaves_the_dashboard_correct(warehouse_url):
    times = hours(END - 20 * 24 * HOUR, END)
    load_batch(bars("BTC", times, path(times)), url=warehouse_url)
    refresh(warehouse_url)
    # A correction the rollups rebuild picks up without recording day spans: only a dashboard rebuild sees it.
    load_batch(bars("BTC", [END - 15 * 24 * HOUR], 1000.0), url=warehouse_url)
    rebuild_rollups(warehouse_url)
    execute(warehouse_url, "DELETE FROM market.invalidations")

    result = CliRunner().invoke(main, ["refresh", "--rebuild"])

    assert result.exit_code == 0, result.output
    assert "dashboard: 1 cryptos, extremes rebuilt (1 changed)" in result.output
    assert_dashboard_matches(warehouse_url)


def test_cli_refresh_brings_rollups_then_dashboard_up_to_date(warehouse_url):
    times = hours(END - 3 * 24 * HOUR, END)
    load_batch(bars("BTC", times, path(times)), url=warehouse_url)

    result = CliRunner().invoke(main, ["refresh"])

    assert result.exit_code == 0, result.output
    assert result.output.index("rollups:") < result.output.index("dashboard: 1 cryptos")
    assert_dashboard_matches(warehouse_url)


def test_the_refresh_runs_without_jit_whatever_the_server_says(warehouse_url, monkeypatch):
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        database = conn.execute("SELECT current_database()").fetchone()[0]
        conn.execute(pgsql.SQL("ALTER DATABASE {} SET jit = on").format(pgsql.Identifier(database)))
    with psycopg.connect(warehouse_url) as conn:
        assert conn.execute("SHOW jit").fetchone()[0] == "on"
    original = dashboard_module.query
    # In place of the view's refresh: a statement that fails unless jit is off where the refresh runs.
    monkeypatch.setattr(dashboard_module, "query", lambda name: (
        "SELECT 1 / (current_setting('jit') = 'off')::int" if name == "dashboard/refresh_summary" else original(name)))

    refresh_dashboard(warehouse_url)


@contextmanager
def closing_pools():
    """Pooled connections to a scratch warehouse closed before it is dropped."""
    try:
        yield
    finally:
        close_pools()


def test_on_timescaledb_every_column_equals_pandas_too(server_url, template_database):
    if not timescale_on(server_url):
        pytest.skip("the timescaledb extension is not installed and preloaded on the test server")
    with scratch_warehouse(server_url, template_database, TIMESCALE) as url, closing_pools():
        load_edge_cases(url)
        assert refresh(url).rebuilt
        assert_dashboard_matches(url)
        load_batch(bars("DOT", [END - timedelta(days=10)], 100.0), url=url)  # lowers DOT's all-time high
        load_batch(bars("BTC", [END + HOUR], 150.0), url=url)

        report = refresh(url)

        assert report.cryptos_rescanned == 1 and report.extremes_changed == ["BTC", "DOT"]
        assert_dashboard_matches(url)
        assert not compare_with_live(url).mismatched


# --- any sequence of loads and refreshes -----------------------------------------------------------------

T0 = datetime(2024, 2, 26, 22, tzinfo=UTC)  # near midnight: days split between bars of one load
load_step = st.tuples(
    st.sampled_from(["BTC", "ETH", "SOL"]),
    st.integers(0, 24 * 40),  # first hour
    st.integers(1, 80),  # how many hours
    st.sampled_from([1.0, 2.0, 3.0, 5.0]),  # few price levels: ties and corrections both ways are common
    st.sampled_from(["none", "rollups", "both", "both", "rebuild"]),  # what to refresh afterwards
)


def step_bars(symbol: str, first: int, count: int, level: float) -> PriceBatch:
    h = np.arange(first, first + count)
    close = level * (1 + (h % 4) / 10)
    return bars(symbol, [T0 + HOUR * int(k) for k in h][::-1], close[::-1], (close * (1 + (h % 5) / 10))[::-1],
                (close * (1 - (h % 3) / 10))[::-1], (level * (h % 7 + 1))[::-1])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(load_step, min_size=1, max_size=8))
def test_any_sequence_of_loads_and_refreshes_ends_equal_to_pandas(server_url, template_database, steps):
    with scratch_warehouse(server_url, template_database, "portable") as url, closing_pools():
        for symbol, first, count, level, after in steps:
            load_batch(step_bars(symbol, first, count, level), url=url)
            if after == "rollups":
                refresh_rollups(url)
            elif after == "both":
                refresh(url)
                assert_dashboard_matches(url)  # rollups fresh, dashboard refreshed: must match now
            elif after == "rebuild":
                rebuild_rollups(url)
                refresh_rollups(url)
                refresh_dashboard(url, rebuild=True)
                assert_dashboard_matches(url)
        refresh(url)
        assert_dashboard_matches(url)
        assert not compare_with_live(url).mismatched


# --- readers during refreshes --------------------------------------------------------------------------------


def test_readers_never_fail_or_see_a_half_refreshed_view_during_refreshes(warehouse_url):
    symbols = ["BTC", "ETH", "SOL", "ADA", "XRP", "DOGE", "LINK", "DOT", "LTC", "BNB"]
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for symbol in symbols:
        load_batch(bars(symbol, hours(start, start + 47 * HOUR), 100.0), url=warehouse_url)
    refresh(warehouse_url)
    generations = 25
    stop = threading.Event()
    errors, seen = [], []

    def reader():
        try:
            with psycopg.connect(warehouse_url, autocommit=True) as conn:
                last = None
                while not stop.is_set():
                    rows = conn.execute("SELECT symbol, as_of, current_price, price_24h_ago FROM "
                                        "serving.crypto_dashboard_summary ORDER BY change_24h_percent DESC").fetchall()
                    as_of = {r[1] for r in rows}
                    # Complete (every crypto) and consistent (all from one refresh: one generation's hour and price).
                    assert len(rows) == len(symbols) and len(as_of) == 1, rows
                    (moment,) = as_of
                    generation = round((moment - start) / HOUR) - 47
                    assert {r[2] for r in rows} == {100.0 + generation}, rows
                    assert last is None or moment >= last  # never back to an older refresh
                    last = moment
                    seen.append(generation)
        except Exception as error:  # noqa: BLE001 - surfaced by the assert below
            errors.append(error)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for generation in range(1, generations + 1):
            moment = start + (47 + generation) * HOUR
            load_batch(PriceBatch("test", "test", pd.DataFrame({
                "line": range(1, len(symbols) + 1), "symbol": symbols, "ts": moment, "open": 100.0 + generation,
                "high": 100.0 + generation, "low": 100.0 + generation, "close": 100.0 + generation, "volume": 1.0,
            }), bar_seconds=3600), url=warehouse_url)
            refresh(warehouse_url)
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    assert errors == []
    assert len(set(seen)) > generations // 2  # the readers really read while the refreshes went on
    assert len(seen) > 4 * generations


def test_a_reader_is_not_blocked_by_a_refresh_in_progress_and_sees_the_previous_rows(warehouse_url, monkeypatch):
    an_hour_the_dashboard_has_not_seen(warehouse_url)
    original = dashboard_module.query
    outcomes = []

    def read_while_the_refresh_is_open(name):
        # Called once the view's refresh has run in the refresh's transaction, before its commit.
        if name == "dashboard/record_refresh":
            with psycopg.connect(warehouse_url, autocommit=True) as reader:
                reader.execute("SET lock_timeout = '2s'")  # blocked means an error here, not a wait
                try:
                    outcomes.append(reader.execute("SELECT current_price FROM serving.crypto_dashboard_summary "
                                                   "ORDER BY change_24h_percent DESC").fetchall())
                except psycopg.errors.LockNotAvailable as error:
                    outcomes.append(error)
        return original(name)

    monkeypatch.setattr(dashboard_module, "query", read_while_the_refresh_is_open)
    refresh_dashboard(warehouse_url)
    assert outcomes == [[(path([END])[0],)]]  # the rows from before the refresh, complete
    assert dashboard(warehouse_url)["current_price"].tolist() == [999.0]

    # The same with a plain (not concurrent) refresh: the reader would wait for the commit.
    load_batch(bars("BTC", [END + 2 * HOUR], 555.0), url=warehouse_url)
    refresh_rollups(warehouse_url)
    monkeypatch.setattr(dashboard_module, "query", lambda name: (
        "REFRESH MATERIALIZED VIEW serving.crypto_dashboard_summary" if name == "dashboard/refresh_summary"
        else read_while_the_refresh_is_open(name)))
    refresh_dashboard(warehouse_url)
    assert isinstance(outcomes[-1], psycopg.errors.LockNotAvailable)
