"""Incremental rollups equal a from-scratch aggregation, whatever sequence of loads and refreshes led there."""

from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cryptobt_pipelines.sources.batch import PriceBatch
from cryptobt_pipelines.warehouse.database import (
    TIMESCALE,
    backend_of,
    create_database,
    drop_database,
    migrate,
    timescale_available,
    with_database,
)
from cryptobt_pipelines.warehouse.load import load_batch
from cryptobt_pipelines.warehouse.rollups import RollupStateError, rebuild_rollups, refresh_rollups
from cryptobt_pipelines.warehouse.universe import sync_universe

T0 = datetime(2024, 2, 26, tzinfo=UTC)  # a Monday
HOUR = timedelta(hours=1)
MONDAY_ORIGIN = pd.Timestamp("2000-01-03", tz="UTC")


def frame(url, sql):
    with psycopg.connect(url) as conn:
        cursor = conn.execute(sql)
        return pd.DataFrame(cursor.fetchall(), columns=[d.name for d in cursor.description])


def expected_rollups(url) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Daily and weekly bars computed by pandas straight from market.prices."""
    bars = frame(url, "SELECT crypto_id, ts, open, high, low, close, volume FROM market.prices ORDER BY crypto_id, ts")
    if bars.empty:
        return bars, bars
    bars["ts"] = pd.to_datetime(bars["ts"], utc=True)

    def roll(source: pd.DataFrame, width: str, time_column: str, count_column: str | None) -> pd.DataFrame:
        source = source.assign(bucket=MONDAY_ORIGIN + ((source[time_column] - MONDAY_ORIGIN) // pd.Timedelta(width))
                               * pd.Timedelta(width))
        grouped = source.sort_values(["crypto_id", time_column]).groupby(["crypto_id", "bucket"])
        out = grouped.agg(open=("open", "first"), high=("high", "max"), low=("low", "min"), close=("close", "last"),
                          volume=("volume", "sum"))
        out["n_bars"] = grouped[count_column].sum() if count_column else grouped.size()
        return out.reset_index()

    daily = roll(bars, "1D", "ts", None)
    weekly = roll(daily.rename(columns={"bucket": "day"}), "7D", "day", "n_bars")
    return daily, weekly


def assert_rollups_match(url):
    daily, weekly = expected_rollups(url)
    for table, expected in (("market.prices_daily", daily), ("market.prices_weekly", weekly)):
        actual = frame(url, f"SELECT crypto_id, bucket, open, high, low, close, volume, n_bars FROM {table} "
                            "ORDER BY crypto_id, bucket")
        assert len(actual) == len(expected), table
        if expected.empty:
            continue
        actual["bucket"] = pd.to_datetime(actual["bucket"], utc=True)
        assert (actual["crypto_id"].to_numpy() == expected["crypto_id"].to_numpy()).all(), table
        assert (actual["bucket"].to_numpy() == expected["bucket"].to_numpy()).all(), table
        for column in ("open", "high", "low", "close"):
            assert (actual[column].to_numpy() == expected[column].to_numpy()).all(), (table, column)
        assert (actual["n_bars"].to_numpy() == expected["n_bars"].to_numpy()).all(), table
        np.testing.assert_allclose(actual["volume"].to_numpy(), expected["volume"].to_numpy(), rtol=1e-9)


def last_change_id(url) -> int:
    return frame(url, "SELECT coalesce(max(change_id), 0) AS id FROM market.rollup_changes")["id"][0]


def assert_counts_match_changes(url, report, recorded_before: int):
    """The days and weeks a refresh reports are those of the day spans it recorded in market.rollup_changes."""
    spans = frame(url, f"SELECT crypto_id, first_day, last_day FROM market.rollup_changes WHERE change_id > {recorded_before}")
    days = {(crypto_id, pd.Timestamp(first) + pd.Timedelta(days=k))
            for crypto_id, first, last in spans.itertuples(index=False) for k in range((last - first).days + 1)}
    weeks = {(crypto_id, MONDAY_ORIGIN + (day - MONDAY_ORIGIN) // pd.Timedelta("7D") * pd.Timedelta("7D"))
             for crypto_id, day in days}
    assert (report.days_refreshed, report.weeks_refreshed) == (len(days), len(weeks))


def bars(symbol, hours, price=100.0, volume=1.0) -> PriceBatch:
    rows = pd.DataFrame({
        "line": range(1, len(hours) + 1), "symbol": symbol, "ts": [T0 + h * HOUR for h in hours],
        "open": price, "high": price * 1.1, "low": price * 0.9, "close": price * 1.05, "volume": volume,
    })
    return PriceBatch("test", "test", rows, bar_seconds=3600)


def test_a_refresh_rolls_days_into_utc_days_and_monday_weeks(warehouse_url):
    load_batch(bars("BTC", range(0, 24 * 9)), url=warehouse_url)

    report = refresh_rollups(warehouse_url)

    assert (report.ranges_consumed, report.days_refreshed, report.weeks_refreshed, report.ranges_pending) == (1, 9, 2, 0)
    weeks = frame(warehouse_url, "SELECT bucket, n_bars FROM market.prices_weekly ORDER BY bucket")
    assert weeks["n_bars"].tolist() == [168, 48]
    assert [b.weekday() for b in weeks["bucket"]] == [0, 0]
    assert_rollups_match(warehouse_url)


def test_buckets_stay_utc_when_the_session_time_zone_has_daylight_saving(warehouse_url):
    # '1 day' added to a timestamptz follows the session time zone: across a DST change it is 23 or 25 hours.
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        database = conn.execute("SELECT current_database()").fetchone()[0]
        conn.execute(f'ALTER DATABASE "{database}" SET timezone = \'America/New_York\'')
    spring = datetime(2024, 3, 9, tzinfo=UTC)  # New York springs forward on 2024-03-10, falls back on 11-03
    for start in (spring, datetime(2024, 11, 2, tzinfo=UTC)):
        hours = [int((start - T0) / HOUR) + h for h in range(72)]
        load_batch(bars("BTC", hours[:30]), url=warehouse_url)
        refresh_rollups(warehouse_url)
        load_batch(bars("BTC", hours[30:]), url=warehouse_url)  # appended: the merge path
        refresh_rollups(warehouse_url)
        load_batch(bars("BTC", hours[20:50], price=90.0), url=warehouse_url)  # corrected: the recompute path
        refresh_rollups(warehouse_url)

    daily = frame(warehouse_url, "SELECT n_bars FROM market.prices_daily ORDER BY bucket")
    assert daily["n_bars"].tolist() == [24] * 6
    assert_rollups_match(warehouse_url)


def test_a_refresh_with_nothing_pending_changes_nothing(warehouse_url):
    load_batch(bars("ETH", range(0, 30)), url=warehouse_url)
    refresh_rollups(warehouse_url)

    again = refresh_rollups(warehouse_url)

    assert (again.ranges_consumed, again.days_refreshed, again.weeks_refreshed) == (0, 0, 0)
    assert_rollups_match(warehouse_url)


def test_ranges_outside_the_window_stay_pending_until_a_wider_refresh(warehouse_url):
    load_batch(bars("BTC", range(0, 24 * 20)), url=warehouse_url)

    windowed = refresh_rollups(warehouse_url, T0 + timedelta(days=10), T0 + timedelta(days=12))

    assert windowed.days_refreshed == 2 and windowed.ranges_pending == 2
    pending = frame(warehouse_url, "SELECT range_start, range_end FROM market.invalidations ORDER BY range_start")
    assert pending["range_start"].tolist()[1] == T0 + timedelta(days=12)
    assert pending["range_end"].tolist()[0] == T0 + timedelta(days=10) - timedelta(microseconds=1)
    assert len(frame(warehouse_url, "SELECT * FROM market.prices_daily")) == 2

    rest = refresh_rollups(warehouse_url)
    assert rest.ranges_pending == 0
    assert_rollups_match(warehouse_url)


def test_each_refresh_records_the_day_spans_it_rewrote_for_downstream(warehouse_url):
    load_batch(bars("BTC", range(0, 24 * 3)), url=warehouse_url)
    load_batch(bars("ETH", [5]), url=warehouse_url)
    refresh_rollups(warehouse_url)
    load_batch(bars("BTC", [24 * 10, 24 * 10 + 1]), url=warehouse_url)  # a later day, apart from the first span
    refresh_rollups(warehouse_url)
    refresh_rollups(warehouse_url)  # nothing pending: nothing recorded

    changes = frame(warehouse_url, "SELECT c.symbol, r.first_day, r.last_day FROM market.rollup_changes r "
                                   "JOIN market.cryptos c USING (crypto_id) ORDER BY r.first_day, c.symbol")

    assert [tuple(row) for row in changes.itertuples(index=False)] == [
        ("BTC", T0, T0 + timedelta(days=2)),
        ("ETH", T0, T0),
        ("BTC", T0 + timedelta(days=10), T0 + timedelta(days=10)),
    ]


def rollup_state(url) -> dict[str, pd.DataFrame]:
    return {table: frame(url, f"SELECT * FROM {table} ORDER BY 1, 2")
            for table in ("market.prices_daily", "market.prices_weekly", "market.rollup_heads",
                          "market.invalidations", "market.rollup_changes")}


@pytest.mark.parametrize(("change", "failing_statement"), [
    (range(48, 60), "aggregates/record_refresh"),  # appended hours: merged into their buckets
    (range(30, 40), "aggregates/refresh_weekly"),  # hours the rollups hold: their buckets are recomputed
])
def test_a_refresh_that_dies_leaves_rollups_and_log_as_they_were(warehouse_url, monkeypatch, change,
                                                                 failing_statement):
    load_batch(bars("BTC", range(0, 48)), url=warehouse_url)
    refresh_rollups(warehouse_url)
    load_batch(bars("BTC", change, price=120.0), url=warehouse_url)
    before = rollup_state(warehouse_url)

    from cryptobt_pipelines.warehouse import rollups

    original = rollups.query
    monkeypatch.setattr(rollups, "query",
                        lambda name: "SELECT 1/0" if name == failing_statement else original(name))
    with pytest.raises(psycopg.errors.DivisionByZero):
        refresh_rollups(warehouse_url)

    after = rollup_state(warehouse_url)
    for table, rows in before.items():
        assert after[table].equals(rows), table
    assert len(after["market.invalidations"]) == 1
    monkeypatch.undo()
    refresh_rollups(warehouse_url)
    assert_rollups_match(warehouse_url)


def test_appended_bars_are_merged_into_their_buckets(warehouse_url):
    load_batch(bars("BTC", range(0, 30)), url=warehouse_url)
    load_batch(bars("ETH", range(0, 5)), url=warehouse_url)
    first = refresh_rollups(warehouse_url)
    assert first.cryptos_appended == 0  # nothing rolled up yet: buckets aggregated from their bars

    # Hour by hour across the end of a day and of a week (T0 + 7 days is a Monday), at other prices.
    for hour in [*range(30, 50), *range(24 * 7 - 2, 24 * 7 + 3)]:
        load_batch(bars("BTC", [hour], price=100.0 + hour, volume=hour / 3), url=warehouse_url)
        report = refresh_rollups(warehouse_url)
        assert (report.cryptos_appended, report.days_refreshed, report.weeks_refreshed) == (1, 1, 1)
        assert_rollups_match(warehouse_url)

    # Several hours of two cryptos in one load, then ETH days later: one merge each.
    load_batch(bars("BTC", range(24 * 7 + 3, 24 * 7 + 9), price=80.0), url=warehouse_url)
    load_batch(bars("ETH", range(24 * 3, 24 * 3 + 2), price=300.0), url=warehouse_url)
    assert refresh_rollups(warehouse_url).cryptos_appended == 2
    assert_rollups_match(warehouse_url)


def test_a_bucket_with_changed_bars_is_recomputed_not_merged(warehouse_url):
    load_batch(bars("BTC", range(0, 10)), url=warehouse_url)
    refresh_rollups(warehouse_url)

    load_batch(bars("BTC", [10, 11], price=200.0), url=warehouse_url)  # an append ...
    load_batch(bars("BTC", [3], price=50.0), url=warehouse_url)  # ... and a correction of the same day
    assert refresh_rollups(warehouse_url).cryptos_appended == 0
    assert_rollups_match(warehouse_url)

    load_batch(bars("BTC", [12], price=90.0), url=warehouse_url)
    load_batch(bars("BTC", [12], price=95.0), url=warehouse_url)  # the new hour corrected before a refresh
    assert refresh_rollups(warehouse_url).cryptos_appended == 1
    load_batch(bars("BTC", [12], price=97.0), url=warehouse_url)  # and again once it is rolled up
    assert refresh_rollups(warehouse_url).cryptos_appended == 0
    assert_rollups_match(warehouse_url)


def test_an_append_inside_the_window_leaves_older_pending_bars_to_a_later_recompute(warehouse_url):
    load_batch(bars("BTC", range(0, 24)), url=warehouse_url)
    refresh_rollups(warehouse_url)
    load_batch(bars("BTC", range(24, 31), price=110.0), url=warehouse_url)  # day 1, before the window
    load_batch(bars("BTC", range(34, 38), price=120.0), url=warehouse_url)  # day 1, inside the window
    load_batch(bars("BTC", range(60, 62), price=130.0), url=warehouse_url)  # day 2, inside the window

    windowed = refresh_rollups(warehouse_url, T0 + 32 * HOUR, T0 + 72 * HOUR)

    assert (windowed.cryptos_appended, windowed.ranges_pending) == (1, 1)
    rest = refresh_rollups(warehouse_url)
    assert (rest.cryptos_appended, rest.ranges_pending) == (0, 0)  # hours 24-30 lie before the head now
    assert_rollups_match(warehouse_url)


def test_after_a_rebuild_buckets_are_recomputed_until_the_heads_are_back(warehouse_url):
    load_batch(bars("BTC", range(0, 30)), url=warehouse_url)
    refresh_rollups(warehouse_url)
    load_batch(bars("BTC", [30]), url=warehouse_url)
    rebuild_rollups(warehouse_url)  # holds hour 30 already; its range stays pending

    load_batch(bars("BTC", [31], price=150.0), url=warehouse_url)
    assert refresh_rollups(warehouse_url).cryptos_appended == 0
    assert_rollups_match(warehouse_url)
    load_batch(bars("BTC", [32], price=160.0), url=warehouse_url)
    assert refresh_rollups(warehouse_url).cryptos_appended == 1
    assert_rollups_match(warehouse_url)


def test_rollups_edited_by_hand_stop_the_append_path_with_a_clear_error(warehouse_url):
    load_batch(bars("BTC", range(0, 30)), url=warehouse_url)
    refresh_rollups(warehouse_url)
    with psycopg.connect(warehouse_url) as conn:
        conn.execute("DELETE FROM market.prices_daily WHERE bucket = %s", [T0 + timedelta(days=1)])
    load_batch(bars("BTC", [30]), url=warehouse_url)
    before = rollup_state(warehouse_url)

    with pytest.raises(RollupStateError, match="rebuild"):
        refresh_rollups(warehouse_url)

    after = rollup_state(warehouse_url)
    assert all(after[table].equals(rows) for table, rows in before.items())
    rebuild_rollups(warehouse_url)
    refresh_rollups(warehouse_url)
    assert_rollups_match(warehouse_url)


load_step = st.tuples(
    st.sampled_from(["BTC", "ETH", "SOL"]),
    st.sampled_from(["anywhere", "append"]),  # append: the hours start `first` hours after the symbol's last
    st.integers(0, 24 * 21),  # first hour
    st.integers(1, 60),  # how many hours
    st.floats(1.0, 1000.0, allow_nan=False),  # price (a different price makes a correction)
    st.booleans(),  # refresh afterwards
)


def timescale_on(server_url) -> bool:
    with psycopg.connect(server_url) as conn:
        return timescale_available(conn)


@contextmanager
def scratch_warehouse(server_url, template_database, backend):
    """A warehouse of the given backend, dropped afterwards. TimescaleDB databases cannot serve as templates
    (its scheduler keeps a session on them), so those are migrated from empty."""
    name = f"cryptobt_rollups_{backend}_{np.random.default_rng().integers(1e12)}"
    if backend == TIMESCALE:
        create_database(server_url, name)
        url = with_database(server_url, name)
        migrate(url, timescale="on")
        sync_universe(url)
    else:
        create_database(server_url, name, template=template_database)
        url = with_database(server_url, name)
    try:
        yield url
    finally:
        drop_database(server_url, name)


@pytest.fixture(params=["portable", TIMESCALE])
def backend(request, server_url):
    if request.param == TIMESCALE and not timescale_on(server_url):
        pytest.skip("the timescaledb extension is not installed and preloaded on the test server")
    return request.param


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(load_step, min_size=1, max_size=8),
       window=st.none() | st.tuples(st.integers(0, 24 * 22), st.integers(1, 24 * 6)))  # start and length, hours
def test_any_sequence_of_loads_and_refreshes_ends_equal_to_a_scratch_aggregation(
    server_url, template_database, backend, steps, window
):
    with scratch_warehouse(server_url, template_database, backend) as url:
        last_hour = {}
        for symbol, where, first, count, price, refresh_after in steps:
            if where == "append":
                first = last_hour.get(symbol, -1) + 1 + first % 30
            last_hour[symbol] = max(last_hour.get(symbol, -1), first + count - 1)
            hours = list(range(first, first + count))[::-1]  # out of order inside the batch too
            load_batch(bars(symbol, hours, price=price, volume=price / 7), url=url)
            if refresh_after:
                start, end = (T0 + window[0] * HOUR, T0 + (window[0] + window[1]) * HOUR) if window else (None, None)
                recorded_before = last_change_id(url)
                report = refresh_rollups(url, start, end)
                event(f"cryptos appended: {report.cryptos_appended}")
                assert_counts_match_changes(url, report, recorded_before)
        refresh_rollups(url)
        assert_rollups_match(url)
        assert frame(url, "SELECT count(*) AS n FROM market.invalidations")["n"][0] == 0


near_head_step = st.tuples(
    st.sampled_from(["BTC", "ETH"]),
    st.sampled_from(["append", "correct"]),  # after the symbol's last hour, or over some of its last 30 hours
    st.integers(0, 29),  # the gap before an append, or how far back a correction starts
    st.integers(1, 30),  # how many hours
    st.floats(1.0, 1000.0, allow_nan=False),  # price
    st.sampled_from(["none", "all", "last two days"]),  # the refresh afterwards
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(near_head_step, min_size=2, max_size=12))
def test_appends_and_corrections_near_the_head_end_equal_to_a_scratch_aggregation(
    server_url, template_database, backend, steps
):
    with scratch_warehouse(server_url, template_database, backend) as url:
        last_hour = {"BTC": 24 * 6 - 1, "ETH": 24 * 6 - 1}
        for symbol in last_hour:
            load_batch(bars(symbol, range(0, 24 * 6)), url=url)
        refresh_rollups(url)
        for symbol, kind, offset, count, price, refresh in steps:
            if kind == "append":
                first = last_hour[symbol] + 1 + offset
            else:
                first = last_hour[symbol] - offset
            last_hour[symbol] = max(last_hour[symbol], first + count - 1)
            load_batch(bars(symbol, range(first, first + count), price=price, volume=price / 3), url=url)
            if refresh != "none":
                start = T0 + (max(last_hour.values()) - 47) * HOUR if refresh == "last two days" else None
                event(f"cryptos appended: {refresh_rollups(url, start).cryptos_appended}")
        refresh_rollups(url)
        assert_rollups_match(url)


def test_timescaledb_warehouse_has_the_same_names_as_native_objects(server_url, template_database):
    if not timescale_on(server_url):
        pytest.skip("the timescaledb extension is not installed and preloaded on the test server")
    with scratch_warehouse(server_url, template_database, TIMESCALE) as url:
        with psycopg.connect(url) as conn:
            assert backend_of(conn) == TIMESCALE
            hypertables = conn.execute("SELECT hypertable_schema || '.' || hypertable_name, compression_enabled "
                                       "FROM timescaledb_information.hypertables "
                                       "WHERE hypertable_schema = 'market'").fetchall()
            assert ("market.prices", True) in hypertables
            aggregates = conn.execute("SELECT view_name FROM timescaledb_information.continuous_aggregates "
                                      "ORDER BY 1").fetchall()
            assert aggregates == [("prices_daily",), ("prices_weekly",)]
            jobs = {r[0] for r in conn.execute("SELECT proc_name FROM timescaledb_information.jobs "
                                               "WHERE hypertable_schema IS NOT NULL")}
            assert {"policy_refresh_continuous_aggregate", "policy_compression"} <= jobs


def test_concurrent_refreshes_and_loads_end_consistent(warehouse_url):
    import threading

    errors = []

    def loader(symbol):
        try:
            for day in range(6):
                load_batch(bars(symbol, range(24 * day, 24 * day + 24), price=10.0 + day), url=warehouse_url)
        except Exception as error:  # noqa: BLE001 - surfaced by the assert below
            errors.append(error)

    def refresher():
        try:
            for _ in range(8):
                refresh_rollups(warehouse_url)
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=loader, args=(s,)) for s in ("BTC", "ETH")]
    threads += [threading.Thread(target=refresher) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    refresh_rollups(warehouse_url)

    assert errors == []
    assert_rollups_match(warehouse_url)
