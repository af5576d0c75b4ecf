"""When the rollups refresh: right after every ingest (sensor), and hourly as a policy for late data."""

import dagster as dg

from cryptobt_pipelines.defs.aggregates.assets import RefreshConfig, refresh_rollups_job
from cryptobt_pipelines.defs.resources import WarehouseResource
from cryptobt_pipelines.warehouse.database import query


@dg.sensor(
    job=refresh_rollups_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Refreshes the rollups whenever the invalidation log has pending ranges, whoever loaded them.",
)
def rollups_after_ingest_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
    # Driven by the log, not by materialization events: several ingests between two ticks (or a CLI load
    # Dagster never saw) make one refresh, and a tick with nothing pending makes none.
    with warehouse.connect() as conn:
        pending, newest = conn.execute(query("aggregates/pending_invalidations")).fetchone()
    if not pending:
        return dg.SkipReason("rollups are up to date")
    return dg.RunRequest(run_key=f"invalidations-through-{newest}")


rollups_policy_schedule = dg.ScheduleDefinition(
    name="rollups_refresh_policy",
    job=refresh_rollups_job,
    cron_schedule="7 * * * *",
    run_config=dg.RunConfig(ops={"price_rollups": RefreshConfig(window_days=30)}),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly, like a TimescaleDB refresh policy: changes to the last 30 days, including late data.",
)
