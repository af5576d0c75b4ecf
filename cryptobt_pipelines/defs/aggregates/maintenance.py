"""Daily upkeep of the recent-window partial indexes (see warehouse/indexes.py for why they roll)."""

import dagster as dg

from cryptobt_pipelines.defs.resources import WarehouseResource
from cryptobt_pipelines.defs.run_tags import MAINTENANCE_RUN_TAGS
from cryptobt_pipelines.warehouse.indexes import roll_recent_indexes


@dg.op(description="Build the partial indexes for the new 90-day cutoff (concurrently), then drop the old ones.")
def roll_recent_window_indexes(context: dg.OpExecutionContext, warehouse: WarehouseResource) -> None:
    roll = roll_recent_indexes(warehouse.url)
    context.log.info(f"cutoff {roll.cutoff:%Y-%m-%d}: created {roll.created or 'none'}, dropped {roll.dropped or 'none'}")


@dg.job(description="Roll the 90-day partial indexes forward.", tags=MAINTENANCE_RUN_TAGS)
def roll_recent_indexes_job():
    roll_recent_window_indexes()


recent_indexes_schedule = dg.ScheduleDefinition(
    job=roll_recent_indexes_job,
    cron_schedule="20 0 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day after midnight UTC: the recent window moves by a day.",
)
