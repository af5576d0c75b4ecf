"""The nightly backtests: one run over every crypto partition, launched only when something changed.

A schedule cannot request a backfill, but a run whose tags name a partition range is one run over that range
(what a single-run backfill launches, and the pattern of dagster-open-platform's schedules); with dynamic
partitions the range from the first key to the last is every crypto. The asset itself skips the backtests
whose inputs did not change; the schedule skips the whole tick when none did, so no run starts for nothing.
"""


import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from cryptobt_pipelines.backtests import cryptos_to_backtest, plan_runs
from cryptobt_pipelines.defs.backtests.assets import nightly_backtests_job
from cryptobt_pipelines.defs.partitions import crypto_partitions
from cryptobt_pipelines.defs.resources import WarehouseResource


@dg.schedule(
    job=nightly_backtests_job,
    cron_schedule="30 1 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every night after the day's bars are in: every strategy's defaults over every crypto, one run.",
)
def nightly_backtests_schedule(context: dg.ScheduleEvaluationContext, warehouse: WarehouseResource):
    symbols = context.instance.get_dynamic_partitions(crypto_partitions.name)
    if not symbols:
        return dg.SkipReason("no crypto partitions yet (the universe sensor adds them)")
    stale = cryptos_to_backtest(warehouse.url, symbols, plan_runs())
    if not stale:
        return dg.SkipReason(f"the backtests of all {len(symbols)} cryptos are current")
    context.log.info(f"{len(stale)} of {len(symbols)} cryptos have backtests to compute: {', '.join(stale[:20])}")
    return dg.RunRequest(
        run_key=f"nightly-{context.scheduled_execution_time:%Y-%m-%d}",
        tags={ASSET_PARTITION_RANGE_START_TAG: symbols[0], ASSET_PARTITION_RANGE_END_TAG: symbols[-1]},
    )
