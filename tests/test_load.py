"""The one load path, against a real warehouse: what is stored, refused, logged and left alone."""

import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryptobt_pipelines.sources.batch import PriceBatch
from cryptobt_pipelines.warehouse import load as load_module
from cryptobt_pipelines.warehouse.load import load_batch

T0 = datetime(2024, 3, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def bar(symbol="BTC", hour=0, open=100.0, high=110.0, low=90.0, close=105.0, volume=5.0, line=None, ts=None):
    return {"line": line, "symbol": symbol, "ts": ts or T0 + hour * HOUR, "open": open, "high": high, "low": low,
            "close": close, "volume": volume}


def batch_of(rows, source="test.csv", bar_seconds=3600, rejects=None) -> PriceBatch:
    frame = pd.DataFrame(rows)
    frame["line"] = [r["line"] if r["line"] is not None else i + 2 for i, r in enumerate(rows)]
    batch = PriceBatch(source=source, format="test", bars=frame, bar_seconds=bar_seconds)
    if rejects is not None:
        batch.rejects = rejects
    return batch


def stored(url, symbol=None):
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.symbol, p.ts, p.open, p.high, p.low, p.close, p.volume FROM market.prices p "
            "JOIN market.cryptos c USING (crypto_id) WHERE %(s)s::text IS NULL OR c.symbol = %(s)s "
            "ORDER BY c.symbol, p.ts",
            {"s": symbol},
        ).fetchall()
    return rows


def fetch(url, sql, params=None):
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def test_new_bars_are_inserted_with_their_invalidation_range(warehouse_url):
    report = load_batch(batch_of([bar(hour=h) for h in range(3)] + [bar("ETH", hour=5)]), url=warehouse_url)

    assert (report.rows_inserted, report.rows_updated, report.rows_rejected) == (4, 0, 0)
    assert report.changed_symbols == ["BTC", "ETH"]
    assert [r[:2] for r in stored(warehouse_url)] == [
        ("BTC", T0), ("BTC", T0 + HOUR), ("BTC", T0 + 2 * HOUR), ("ETH", T0 + 5 * HOUR)
    ]
    log = fetch(warehouse_url, "SELECT c.symbol, range_start, range_end, load_id FROM market.invalidations "
                               "JOIN market.cryptos c USING (crypto_id) ORDER BY 1")
    assert log == [("BTC", T0, T0 + 2 * HOUR, report.load_id), ("ETH", T0 + 5 * HOUR, T0 + 5 * HOUR, report.load_id)]
    assert fetch(warehouse_url, "SELECT symbol, bar_seconds, data_version, first_ts, last_ts FROM market.cryptos "
                                "WHERE symbol IN ('BTC', 'ETH') ORDER BY symbol") == [
        ("BTC", 3600, 1, T0, T0 + 2 * HOUR), ("ETH", 3600, 1, T0 + 5 * HOUR, T0 + 5 * HOUR)
    ]


def test_loading_the_same_batch_twice_changes_nothing(warehouse_url):
    batch = batch_of([bar(hour=h) for h in range(5)])
    load_batch(batch, url=warehouse_url)
    before = stored(warehouse_url)

    again = load_batch(batch, url=warehouse_url)

    assert (again.rows_inserted, again.rows_updated, again.rows_unchanged) == (0, 0, 5)
    assert again.changed_symbols == [] and again.min_ts is None
    assert stored(warehouse_url) == before
    assert fetch(warehouse_url, "SELECT count(*) FROM market.invalidations") == [(1,)]
    assert fetch(warehouse_url, "SELECT data_version FROM market.cryptos WHERE symbol = 'BTC'") == [(1,)]


def test_a_corrected_bar_replaces_the_old_one_and_invalidates_only_its_range(warehouse_url):
    load_batch(batch_of([bar(hour=h) for h in range(5)]), url=warehouse_url)

    corrected = [bar(hour=h) for h in range(5)]
    corrected[2] = bar(hour=2, close=99.5)
    report = load_batch(batch_of(corrected), url=warehouse_url)

    assert (report.rows_updated, report.rows_inserted, report.rows_unchanged) == (1, 0, 4)
    assert stored(warehouse_url)[2][5] == 99.5
    assert fetch(warehouse_url, "SELECT range_start, range_end FROM market.invalidations WHERE load_id = %s",
                 [report.load_id]) == [(T0 + 2 * HOUR, T0 + 2 * HOUR)]
    assert fetch(warehouse_url, "SELECT data_version FROM market.cryptos WHERE symbol = 'BTC'") == [(2,)]


@pytest.mark.parametrize(
    "row, rule, reason",
    [
        (bar(open=0.0, low=0.0), "not_positive", "open is not positive (0.0)"),
        (bar(close=-1.0, low=-2.0), "not_positive", "low is not positive (-2.0)"),
        (bar(high=float("nan")), "missing_value", "high is missing"),
        (bar(close=float("inf"), high=float("inf")), "not_finite", "high is not finite"),
        (bar(high=80.0, low=90.0, open=85.0, close=85.0), "high_below_low", "high 80.0 is below low 90.0"),
        (bar(open=120.0), "outside_range", "open 120.0 is outside [low 90.0, high 110.0]"),
        (bar(close=80.0), "outside_range", "close 80.0 is outside [low 90.0, high 110.0]"),
        (bar(volume=-3.0), "negative_volume", "volume is negative (-3.0)"),
        (bar(volume=float("nan")), "missing_value", "volume is missing"),
        (bar(symbol="NOPE"), "unknown_symbol", "unknown symbol 'NOPE' (not in market.cryptos)"),
        (bar(ts=datetime(2099, 1, 1, tzinfo=UTC)), "future_timestamp", "timestamp 2099-01-01T00:00:00+00:00 is in the future"),
        (bar(ts=T0 + timedelta(minutes=30)), "off_grid", "timestamp 2024-03-01T00:30:00+00:00 is off the 1h grid"),
    ],
)
def test_each_bad_row_is_refused_and_recorded_with_line_and_reason(warehouse_url, row, rule, reason):
    report = load_batch(batch_of([bar(hour=5), {**row, "line": 42}], source="bad.csv"), url=warehouse_url)

    assert (report.rows_inserted, report.rows_rejected) == (1, 1)
    assert report.reject_reasons == {rule: 1}
    assert fetch(warehouse_url, "SELECT source, line, symbol, rule, reason, load_id FROM market.rejected_prices") == [
        ("bad.csv", 42, row["symbol"], rule, reason, report.load_id)
    ]
    assert len(stored(warehouse_url)) == 1


def test_duplicates_inside_a_batch_collapse_when_identical_and_are_all_refused_when_they_conflict(warehouse_url):
    rows = [bar(hour=0, line=2), bar(hour=0, line=3), bar(hour=1, line=4), bar(hour=1, close=101.0, line=5),
            bar(hour=2, line=6)]

    report = load_batch(batch_of(rows), url=warehouse_url)

    assert (report.rows_inserted, report.rows_collapsed, report.rows_rejected) == (2, 1, 2)
    assert [r[1] for r in stored(warehouse_url)] == [T0, T0 + 2 * HOUR]
    refused = fetch(warehouse_url, "SELECT line, rule, reason FROM market.rejected_prices ORDER BY line")
    expected = "conflicting duplicate of BTC 2024-03-01T01:00:00+00:00 (lines 4, 5)"
    assert refused == [(4, "conflicting_duplicate", expected), (5, "conflicting_duplicate", expected)]


def test_rows_the_reader_could_not_parse_are_recorded_too(warehouse_url):
    parse_rejects = pd.DataFrame({"line": [7], "symbol": ["BTC"], "reason": ["unparsable timestamp 'x'"],
                                  "raw": ["x,1,2,0.5,1,3"]})
    report = load_batch(batch_of([bar()], rejects=parse_rejects), url=warehouse_url)

    assert report.rows_read == 2 and report.rows_rejected == 1
    assert fetch(warehouse_url, "SELECT line, rule, reason, raw FROM market.rejected_prices") == [
        (7, "unparsable", "unparsable timestamp 'x'", "x,1,2,0.5,1,3")
    ]


def test_reloading_a_file_refreshes_its_refused_rows_instead_of_repeating_them(warehouse_url):
    batch = batch_of([bar(), bar(hour=1, volume=-1.0)])
    load_batch(batch, url=warehouse_url)
    second = load_batch(batch, url=warehouse_url)

    assert fetch(warehouse_url, "SELECT line, load_id FROM market.rejected_prices") == [(3, second.load_id)]


def test_a_daily_file_cannot_overwrite_a_crypto_held_in_hourly_bars(warehouse_url):
    load_batch(batch_of([bar(hour=h) for h in range(3)]), url=warehouse_url)

    report = load_batch(batch_of([bar(hour=0, close=1.0, low=0.5, open=1.0, high=2.0)], bar_seconds=86_400),
                        url=warehouse_url)

    assert report.rows_rejected == 1 and report.rows_loaded == 0
    assert fetch(warehouse_url, "SELECT reason FROM market.rejected_prices") == [
        ("BTC holds 1h bars; this source has 1d bars",)
    ]
    assert stored(warehouse_url)[0][5] == 105.0


def test_bars_spanning_years_land_in_yearly_partitions(warehouse_url):
    last_hours = datetime(2023, 12, 31, 22, tzinfo=UTC)
    load_batch(batch_of([bar(ts=last_hours + h * HOUR) for h in range(4)]), url=warehouse_url)

    partitions = fetch(warehouse_url, "SELECT tableoid::regclass::text, count(*) FROM market.prices GROUP BY 1 ORDER BY 1")
    assert partitions == [("market.prices_2023", 2), ("market.prices_2024", 2)]


def test_a_load_that_fails_midway_leaves_nothing_behind(warehouse_url, monkeypatch):
    load_batch(batch_of([bar(hour=0)]), url=warehouse_url)
    before = {t: fetch(warehouse_url, f"SELECT count(*) FROM {t}") for t in
              ("market.prices", "market.loads", "market.invalidations", "market.rejected_prices")}

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(load_module, "_record_rejects", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        load_batch(batch_of([bar(hour=h) for h in range(1, 50)] + [bar(hour=60, volume=-1.0)]), url=warehouse_url)

    after = {t: fetch(warehouse_url, f"SELECT count(*) FROM {t}") for t in before}
    assert after == before
    assert fetch(warehouse_url, "SELECT data_version FROM market.cryptos WHERE symbol = 'BTC'") == [(1,)]


def test_concurrent_loads_of_one_crypto_both_land(warehouse_url):
    batches = [batch_of([bar(hour=h) for h in range(k, 400, 2)], source=f"part{k}") for k in (0, 1)]
    errors = []

    def run(batch):
        try:
            load_batch(batch, url=warehouse_url)
        except Exception as error:  # noqa: BLE001 - surfaced by the assert below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert len(stored(warehouse_url)) == 400
    assert fetch(warehouse_url, "SELECT data_version FROM market.cryptos WHERE symbol = 'BTC'") == [(2,)]


# --- property: any sequence of loads leaves exactly the last valid version of every bar --------------------

bar_values = st.tuples(st.integers(0, 1), st.integers(0, 30), st.integers(1, 4), st.booleans())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(loads=st.lists(st.lists(bar_values, min_size=1, max_size=25), min_size=1, max_size=5))
def test_any_sequence_of_loads_matches_a_last_write_wins_model(server_url, template_database, loads):
    from cryptobt_pipelines.warehouse.database import create_database, drop_database, with_database

    name = f"cryptobt_prop_{np.random.default_rng().integers(1e12)}"
    create_database(server_url, name, template=template_database)
    url = with_database(server_url, name)
    try:
        model: dict[tuple[str, datetime], float] = {}
        for number, load in enumerate(loads):
            rows, keys = [], {}
            for crypto, hour, price, bad in load:
                symbol = ("BTC", "ETH")[crypto]
                close = float(price) if not bad else -1.0
                rows.append(bar(symbol, hour, open=1.0, high=10.0, low=0.5 if not bad else -2.0, close=close))
                keys.setdefault((symbol, T0 + hour * HOUR), set()).add(close)
            report = load_batch(batch_of(rows, source=f"load{number}"), url=url)
            changed = set()
            for key, closes in keys.items():
                valid = {c for c in closes if c > 0}
                if len(valid) == 1:  # bad rows are refused alone; two different valid rows conflict
                    value = valid.pop()
                    if model.get(key) != value:
                        changed.add(key)
                    model[key] = value
            assert report.rows_inserted + report.rows_updated == len(changed)
            for symbol, ts in changed:  # every changed bar is covered by this load's invalidation range
                assert fetch(url, "SELECT count(*) FROM market.invalidations i JOIN market.cryptos c USING "
                                  "(crypto_id) WHERE load_id = %s AND c.symbol = %s AND %s BETWEEN range_start "
                                  "AND range_end", [report.load_id, symbol, ts]) == [(1,)]
        assert {(s, ts): close for s, ts, _, _, _, close, _ in stored(url)} == model
    finally:
        drop_database(server_url, name)


# --- new years are filled on worker connections and attached by the load's own transaction ----------------


def partitions_and_leftovers(url):
    rows = fetch(url, "SELECT relname FROM pg_class JOIN pg_namespace n ON n.oid = relnamespace "
                      "WHERE nspname = 'market' AND relkind IN ('r', 'p') AND relname LIKE 'prices\\_%' "
                      "AND relname NOT IN ('prices_daily', 'prices_weekly') ORDER BY 1")
    names = [r[0] for r in rows]
    return [n for n in names if not n.startswith("prices_load_")], [n for n in names if n.startswith("prices_load_")]


def across_years(symbol="BTC", first=datetime(2021, 12, 31, 20, tzinfo=UTC), hours=24 * 800):
    return [bar(symbol, ts=first + h * HOUR) for h in range(0, hours, 7)]


def test_a_load_of_several_new_years_attaches_each_year_and_leaves_no_worker_table(warehouse_url):
    report = load_batch(batch_of(across_years() + across_years("ETH")), url=warehouse_url)

    assert report.rows_inserted == 2 * len(across_years())
    partitions, leftovers = partitions_and_leftovers(warehouse_url)
    assert partitions == ["prices_2021", "prices_2022", "prices_2023", "prices_2024"] and leftovers == []
    assert fetch(warehouse_url, "SELECT count(*) FROM market.prices") == [(report.rows_inserted,)]
    again = load_batch(batch_of(across_years() + across_years("ETH")), url=warehouse_url)
    assert again.rows_unchanged == report.rows_inserted and again.changed_symbols == []


def test_a_failure_after_the_workers_committed_leaves_no_bars_and_no_worker_tables(warehouse_url, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("lost the connection")

    monkeypatch.setattr(load_module, "_record_rejects", broken)
    with pytest.raises(RuntimeError, match="lost the connection"):
        load_batch(batch_of(across_years() + [bar(hour=1, volume=-1.0)]), url=warehouse_url)

    partitions, leftovers = partitions_and_leftovers(warehouse_url)
    assert partitions == [] and leftovers == []
    assert fetch(warehouse_url, "SELECT count(*) FROM market.prices") == [(0,)]
    assert fetch(warehouse_url, "SELECT count(*) FROM market.loads") == [(0,)]


def test_worker_tables_of_a_crashed_load_are_dropped_by_the_next_load(warehouse_url):
    with psycopg.connect(warehouse_url) as conn:  # what a load killed between worker commit and attach leaves
        conn.execute("CREATE TABLE market.prices_load_999999_2019 (LIKE market.prices)")

    load_batch(batch_of(across_years()), url=warehouse_url)

    assert partitions_and_leftovers(warehouse_url)[1] == []
