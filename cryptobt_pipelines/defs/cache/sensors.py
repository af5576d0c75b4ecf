"""When the cache catches up with the warehouse: after every ingest (sensor), and hourly for its hit rate."""

import hashlib
import json

import dagster as dg

from cryptobt_pipelines.cache import read_data_versions
from cryptobt_pipelines.defs.cache.assets import refresh_backtest_cache_job
from cryptobt_pipelines.defs.resources import BacktestCacheResource, WarehouseResource


@dg.sensor(
    job=refresh_backtest_cache_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Invalidates cached backtests after every ingest: runs the cache asset whenever Redis's record "
                "of a crypto's data version lags behind market.cryptos.data_version.",
)
def cache_invalidation_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource,
                              backtest_cache: BacktestCacheResource):
    # Driven by state, not by events: several loads between two ticks (or a CLI load Dagster never saw) make
    # one request, and the comparison is with Redis's own record (the cursor that cannot drift from the
    # cache: a restarted Redis has none and is caught up again).
    with warehouse.connect() as conn:
        versions = read_data_versions(conn)
    cache = backtest_cache.for_warehouse(warehouse.url)
    recorded = cache.recorded_versions()
    server_run_id = cache.server_run_id() if recorded is not None else None
    if recorded is None or server_run_id is None:
        return dg.SkipReason(f"Redis at {cache.url} is unavailable ({cache.last_error}): invalidation waits for "
                             "it; readers key on the warehouse's data versions, so nothing stale is served")
    behind = sorted((c, recorded.get(c, 0), v) for c, v in versions.items() if recorded.get(c, 0) != v)
    if not behind:
        return dg.SkipReason(f"the cache knows the data version of all {len(versions)} cryptos")
    context.log.info(f"{len(behind)} cryptos changed since the cache last caught up, e.g. {behind[:5]}")
    # The same lag gives the same key (Dagster runs it once); Redis's run id tells a restarted server apart.
    state = hashlib.sha1(json.dumps(behind).encode()).hexdigest()[:16]
    return dg.RunRequest(run_key=f"cache-{cache.namespace}-{server_run_id[:8]}-{state}",
                         tags={"cryptobt/cryptos_behind": str(len(behind))})


cache_stats_schedule = dg.ScheduleDefinition(
    name="backtest_cache_hourly",
    job=refresh_backtest_cache_job,
    cron_schedule="37 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly: the cache's hit rate as a time series, and a catch-up should a sensor run have failed.",
)
