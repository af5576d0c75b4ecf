"""`cryptobt ingest`, `cryptobt generate` and the demo data set, against a real warehouse."""

from pathlib import Path

import psycopg
from click.testing import CliRunner

from cryptobt_pipelines.cli import main
from cryptobt_pipelines.demo import load_demo_if_empty

FIXTURES = Path(__file__).parent / "fixtures"


def count(url, sql="SELECT count(*) FROM market.prices"):
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchone()[0]


def test_ingest_loads_every_format_and_reports_per_file(warehouse_url):
    files = sorted((FIXTURES / "files").glob("*.csv"))

    result = CliRunner().invoke(main, ["ingest", *map(str, files)])

    assert result.exit_code == 0, result.output
    for path in files:
        assert f"{path.name}: " in result.output
    assert count(warehouse_url) > 0
    assert count(warehouse_url, "SELECT count(*) FROM market.loads") == len(files)
    # Every file's quirks that are refusals are on record, each with a reason.
    assert count(warehouse_url, "SELECT count(*) FROM market.rejected_prices WHERE reason = ''") == 0


def test_ingest_of_an_unreadable_file_fails_with_one_clear_line_and_writes_nothing(warehouse_url, tmp_path):
    junk = tmp_path / "junk.csv"
    junk.write_bytes(b"\x00\x01binary")

    result = CliRunner().invoke(main, ["ingest", str(junk)])

    assert result.exit_code == 1
    assert "junk.csv: FAILED: " in result.output
    assert count(warehouse_url, "SELECT count(*) FROM market.loads") == 0


def test_ingest_with_symbol_and_format_overrides(warehouse_url, tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("timestamp,open,high,low,close,volume\n2024-01-01,1,2,0.5,1.5,10\n2024-01-02,1.5,2,1,1.8,12\n")

    result = CliRunner().invoke(main, ["ingest", str(path), "--symbol", "SOL", "--format", "binance"])

    assert result.exit_code == 0, result.output
    assert count(warehouse_url, "SELECT count(*) FROM market.prices JOIN market.cryptos USING (crypto_id) "
                                "WHERE symbol = 'SOL'") == 2


def test_generate_loads_a_deterministic_data_set_or_writes_files(warehouse_url, tmp_path):
    loaded = CliRunner().invoke(main, ["generate", "--cryptos", "3", "--days", "2"])
    assert loaded.exit_code == 0, loaded.output
    first = count(warehouse_url)
    assert 0 < first <= 3 * 48

    written = CliRunner().invoke(main, ["generate", "--cryptos", "2", "--days", "1", "--interval", "1d",
                                        "--out", str(tmp_path / "out")])
    assert written.exit_code == 0, written.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["BTCUSDT_1d.csv", "ETHUSDT_1d.csv"]

    bad = CliRunner().invoke(main, ["generate", "--cryptos", "999"])
    assert bad.exit_code == 1 and "--cryptos must be between 1 and 263" in bad.output


def test_the_demo_data_set_loads_only_into_an_empty_warehouse(warehouse_url):
    report = load_demo_if_empty(warehouse_url)
    assert report is not None and report.rows_inserted > 100_000
    assert load_demo_if_empty(warehouse_url) is None
