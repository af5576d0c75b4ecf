"""The `cryptobt` command."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from tqdm import tqdm

from cryptobt_pipelines import settings


def _fail(message: str) -> None:
    click.echo(f"cryptobt: {message}", err=True)
    sys.exit(1)


def _prepare_warehouse() -> str:
    """Servers up, schema current, universe loaded; returns the warehouse URL."""
    from cryptobt_pipelines.warehouse.database import migrate
    from cryptobt_pipelines.warehouse.universe import sync_universe

    url = settings.database_url()
    migrate(url)
    sync_universe(url)
    return url


@click.group()
def main() -> None:
    """cryptobt-pipelines: crypto prices into an always-fresh analytics and backtesting warehouse."""


# --- services ---------------------------------------------------------------------------------------------


@main.group()
def services() -> None:
    """The embedded PostgreSQL and Redis under $CRYPTOBT_HOME (unless CRYPTOBT_*_URL point elsewhere)."""


def _embedded():
    from cryptobt_pipelines.warehouse.servers import EmbeddedPostgres, EmbeddedRedis

    home = settings.cryptobt_home()
    return EmbeddedPostgres(home), EmbeddedRedis(home)


@services.command("up")
def services_up() -> None:
    """Start the embedded servers (where no external URL is set) and apply the schema."""
    url = _prepare_warehouse()
    settings.redis_url()
    click.echo(f"warehouse ready: {url}")
    click.echo(f"cache ready:     {settings.redis_url()}")


@services.command("down")
def services_down() -> None:
    """Stop the embedded servers."""
    postgres, redis = _embedded()
    if settings.external_database_url() is None:
        postgres.stop()
    if settings.external_redis_url() is None:
        redis.stop()
    click.echo("embedded servers stopped")


@services.command("status")
def services_status() -> None:
    """Which servers are used and whether they answer."""
    import psycopg
    import redis as redis_client

    postgres, redis = _embedded()
    db_url = settings.external_database_url() or (postgres.url() if postgres.is_running() else None)
    cache_url = settings.external_redis_url() or (redis.url() if redis.is_running() else None)
    try:
        with psycopg.connect(db_url, connect_timeout=3) as conn:
            db_state = conn.execute("SELECT version()").fetchone()[0].split(",")[0] if db_url else "stopped"
    except Exception as error:  # noqa: BLE001 - status reports any failure as text
        db_state = f"unreachable ({str(error).splitlines()[0]})" if db_url else "stopped"
    try:
        cache_state = "up" if cache_url and redis_client.Redis.from_url(cache_url, socket_timeout=3).ping() else "stopped"
    except Exception as error:  # noqa: BLE001
        cache_state = f"unreachable ({error})"
    kind = lambda external: "external" if external else "embedded"  # noqa: E731
    click.echo(f"postgres ({kind(settings.external_database_url())}): {db_state}  {db_url or postgres.pgdata}")
    click.echo(f"redis    ({kind(settings.external_redis_url())}): {cache_state}  {cache_url or redis.dir}")


@services.command("env")
def services_env() -> None:
    """Print `export` lines for the URLs in use (starting embedded servers if needed): eval "$(cryptobt services env)"."""
    for name, value in _environment().items():
        click.echo(f"export {name}={shlex.quote(value)}")


def _environment() -> dict[str, str]:
    from cryptobt_pipelines.warehouse.database import dagster_storage_url, ensure_database

    url = settings.database_url()
    ensure_database(url, settings.DAGSTER_DB)
    return {
        "CRYPTOBT_DATABASE_URL": url,
        "CRYPTOBT_REDIS_URL": settings.redis_url(),
        "DAGSTER_HOME": str(settings.dagster_home()),
        "CRYPTOBT_DAGSTER_STORAGE_URL": dagster_storage_url(url),
    }


# --- ingest -----------------------------------------------------------------------------------------------


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=True, path_type=Path))
@click.option("--symbol", help="Symbol of every bar (overrides the file's symbol column and name).")
@click.option("--format", "file_format", help="File format, instead of detecting it.",
              type=click.Choice(["binance", "binance_raw", "cryptodatadownload", "coinmarketcap", "coingecko"]))
def ingest(paths: tuple[Path, ...], symbol: str | None, file_format: str | None) -> None:
    """Load price files (or every .csv in a folder) into market.prices."""
    from cryptobt_pipelines.ingest import ingest_file

    files = [f for p in paths for f in (sorted(p.glob("*.csv")) if p.is_dir() else [p])]
    url = _prepare_warehouse()
    failed = 0
    with tqdm(total=len(files), unit="file", disable=None) as bar:
        for path in files:
            bar.set_description(path.name[:30])
            rows = tqdm(unit="row", unit_scale=True, leave=False, disable=None)

            def progress(stage: str, done: int, total: int, rows=rows) -> None:
                rows.total = total
                rows.n = done
                rows.set_description(stage)
                rows.refresh()

            outcome = ingest_file(path, url=url, symbol=symbol, format=file_format, progress=progress)
            rows.close()
            if outcome.ok:
                r = outcome.report
                tqdm.write(f"{path.name}: {r.rows_loaded} rows loaded ({r.rows_inserted} new, {r.rows_updated} "
                           f"replaced), {r.rows_rejected} refused, {r.seconds:.2f}s")
                for rule, count in r.reject_reasons.items():
                    tqdm.write(f"    refused {count} × {rule}")
            else:
                failed += 1
                tqdm.write(f"{path.name}: FAILED: {outcome.error}")
            bar.update(1)
    if failed:
        _fail(f"{failed} of {len(files)} files could not be read; nothing was loaded from them")


# --- generate ---------------------------------------------------------------------------------------------

INTERVALS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14_400, "1d": 86_400}


@main.command()
@click.option("--cryptos", default=20, show_default=True, help="How many cryptos of the universe, by rank.")
@click.option("--days", default=365, show_default=True, help="History length, ending at the last whole bar.")
@click.option("--interval", default="1h", show_default=True, type=click.Choice(list(INTERVALS)))
@click.option("--seed", default=7, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Write Binance-format CSV files here (e.g. the landing folder) instead of loading.")
def generate(cryptos: int, days: int, interval: str, seed: int, out: Path | None) -> None:
    """Generate a deterministic synthetic data set (up to 263 cryptos × 5 years hourly) and load or write it."""
    from cryptobt_pipelines.demo import generate_universe_prices
    from cryptobt_pipelines.sources.synthetic import write_binance_csv
    from cryptobt_pipelines.warehouse.load import load_batch

    if not 1 <= cryptos <= 263:
        _fail(f"--cryptos must be between 1 and 263, got {cryptos}")
    if days < 1:
        _fail(f"--days must be positive, got {days}")
    batch = generate_universe_prices(cryptos, timedelta(days=days), INTERVALS[interval], seed)
    click.echo(f"generated {len(batch.bars):,} bars for {cryptos} cryptos")
    if out:
        files = write_binance_csv(batch, out)
        click.echo(f"wrote {len(files)} files to {out}")
        return
    url = _prepare_warehouse()
    with tqdm(total=len(batch.bars), unit="row", unit_scale=True, disable=None) as bar:
        report = load_batch(batch, url=url, progress=lambda stage, done, total: bar.update(done - bar.n))
    click.echo(f"loaded {report.rows_loaded:,} rows ({report.rows_inserted:,} new) in {report.seconds:.1f}s")


# --- refresh ----------------------------------------------------------------------------------------------


@main.command()
@click.option("--rebuild", is_flag=True,
              help="Rebuild both rollups and the dashboard's all-time extremes from scratch first (repairs; slow).")
def refresh(rebuild: bool) -> None:
    """Bring the daily and weekly rollups, then the dashboard, up to date with every pending change."""
    from cryptobt_pipelines.warehouse.rollups import rebuild_rollups

    url = _prepare_warehouse()
    if rebuild:
        click.echo(f"rollups rebuilt from scratch in {rebuild_rollups(url):.1f} s")
    _refresh_derived(url, rebuild_dashboard=rebuild)


def _refresh_derived(url: str, rebuild_dashboard: bool = False) -> None:
    """The rollups, then the dashboard that reads them."""
    from cryptobt_pipelines.warehouse.dashboard import refresh_dashboard
    from cryptobt_pipelines.warehouse.rollups import refresh_rollups

    report = refresh_rollups(url)
    click.echo(f"rollups: {report.days_refreshed} days and {report.weeks_refreshed} weeks refreshed from "
               f"{report.ranges_consumed} changed ranges in {report.seconds * 1000:.1f} ms")
    # A rollup rebuild records no day spans: the dashboard's extremes must then be recomputed, not updated.
    dashboard = refresh_dashboard(url, rebuild=rebuild_dashboard)
    click.echo(f"dashboard: {dashboard.rows} cryptos, extremes {'rebuilt' if dashboard.rebuilt else 'updated'} "
               f"({len(dashboard.extremes_changed)} changed) from {dashboard.changes_applied} rollup changes "
               f"in {dashboard.seconds * 1000:.1f} ms")


# --- backtest ---------------------------------------------------------------------------------------------


@main.command()
@click.option("--strategy", help="Catalog strategy (assets/strategies.json), e.g. sma_cross.")
@click.option("--crypto", "cryptos", help="Symbols, comma-separated: BTC,ETH.")
@click.option("--start", help="First day of the window (YYYY-MM-DD); default: each crypto's first bar.")
@click.option("--end", help="Last day of the window, included (YYYY-MM-DD); default: the last whole bar.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A strategy or common parameter (fee, slippage, initial_investment, fill); repeatable.")
@click.option("--interval", default="1d", show_default=True,
              help="1d: daily rollup; 1h: raw hourly bars (cryptos loaded with hourly bars).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per crypto.")
def backtest(strategy: str | None, cryptos: str | None, start: str | None, end: str | None, params: tuple[str, ...],
             interval: str, as_json: bool) -> None:
    """Backtest a strategy over cryptos from the warehouse's bars (computed now; nothing is stored)."""
    import json
    import math
    from datetime import date

    from cryptobt_pipelines.backtests import BacktestSpec, backtest_cryptos, params_from_text, resolve_symbols

    if not strategy:
        _fail("--strategy is required")
    symbols = [s.strip().upper() for s in (cryptos or "").split(",") if s.strip()]
    if not symbols:
        _fail("--crypto is required: one or more symbols, comma-separated")
    days = {}
    for option, text in (("--start", start), ("--end", end)):
        try:
            days[option] = date.fromisoformat(text) if text else None
        except ValueError:
            _fail(f"{option} {text!r}: expected a date YYYY-MM-DD")
    try:
        spec = BacktestSpec.build(strategy, [params_from_text(strategy, params)], start=days["--start"],
                                  end=days["--end"], interval=interval)
        url = _prepare_warehouse()
        ids = [c.crypto_id for c in resolve_symbols(symbols, url)]
        results = backtest_cryptos(spec.strategy.name, ids, spec.param_sets[0], start=spec.start, end=spec.end,
                                   interval=interval, url=url)
    except ValueError as error:
        _fail(str(error))
    empty = [r.symbol for r in results if r.n_bars == 0]
    if empty:
        _fail(f"no {interval} bars in the window for {', '.join(empty)}")

    if as_json:
        # Strict JSON has no Infinity: an infinite profit factor (gains, no loss) prints as null.
        finite = lambda x: x if not isinstance(x, float) or math.isfinite(x) else None  # noqa: E731
        answer = [{"strategy": spec.strategy.name, "interval": interval,
                   **{k: finite(v) for k, v in r.as_dict().items()}} for r in results]
        click.echo(json.dumps(answer, indent=2, allow_nan=False))
        return
    own = {k: v for k, v in spec.param_sets[0].items() if k in {p.name for p in spec.strategy.parameters}}
    click.echo(f"{spec.strategy.name} {own or ''} · {interval} · fee {spec.param_sets[0]['fee']} · "
               f"slippage {spec.param_sets[0]['slippage']} · fill at {spec.param_sets[0]['fill']}")
    header = (f"{'symbol':<8} {'first bar':<10} {'last bar':<10} {'final value':>13} {'return':>9} {'cagr':>8} "
              f"{'sharpe':>7} {'sortino':>7} {'max dd':>7} {'calmar':>7} {'win rate':>8} {'profit f.':>9} "
              f"{'trades':>6} {'exposure':>8}")
    click.echo(header)
    click.echo("-" * len(header))
    for r in results:
        m = r.metrics
        click.echo(f"{r.symbol:<8} {r.first_bar:%Y-%m-%d} {r.last_bar:%Y-%m-%d} {m['final_value']:>13,.2f} "
                   f"{m['total_return']:>9.1%} {m['cagr']:>8.1%} {m['sharpe']:>7.2f} {m['sortino']:>7.2f} "
                   f"{m['max_drawdown']:>7.1%} {m['calmar']:>7.2f} {m['win_rate']:>8.1%} {m['profit_factor']:>9.2f} "
                   f"{m['n_trades']:>6d} {m['exposure']:>8.1%}")


# --- dev: what `make run` runs ------------------------------------------------------------------------------


@main.command()
@click.option("--port", default=3000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
def dev(port: int, host: str) -> None:
    """Start the servers, load the demo data into an empty warehouse, then the Dagster UI."""
    from cryptobt_pipelines.demo import load_demo_if_empty
    from cryptobt_pipelines.warehouse.indexes import roll_recent_indexes

    url = _prepare_warehouse()
    report = load_demo_if_empty(url)
    if report:
        click.echo(f"empty warehouse: loaded the demo data set ({report.rows_loaded:,} bars)")
    _refresh_derived(url)
    roll_recent_indexes(url)  # the nightly job keeps them rolling from here
    env = _environment()
    dagster_home = Path(env["DAGSTER_HOME"])
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(settings.PROJECT_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    settings.landing_dir().mkdir(parents=True, exist_ok=True)
    os.environ.update(env)
    click.echo("")
    click.echo(f"  Dagster UI:      http://{host}:{port}")
    click.echo(f"  landing folder:  {settings.landing_dir()}  (drop price files here)")
    click.echo(f"  warehouse:       {env['CRYPTOBT_DATABASE_URL']}")
    click.echo("")
    dagster = shutil.which("dagster", path=str(Path(sys.executable).parent)) or "dagster"
    os.execv(dagster, [dagster, "dev", "-w", str(settings.PROJECT_ROOT / "workspace.yaml"),
                       "-h", host, "-p", str(port)])


if __name__ == "__main__":
    main()
