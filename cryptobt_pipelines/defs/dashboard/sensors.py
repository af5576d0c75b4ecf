"""When the dashboard refreshes: whenever the rollups have rewritten days it has not applied yet."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from cryptobt_pipelines.defs.dashboard.assets import refresh_dashboard_job
from cryptobt_pipelines.defs.resources import WarehouseResource
from cryptobt_pipelines.warehouse.database import query

ROLLUPS_GRACE = timedelta(minutes=3)


@dg.sensor(
    job=refresh_dashboard_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Refreshes the dashboard whenever market.rollup_changes has entries (each rollup refresh "
                "writes them), and when the universe moved since the view was last refreshed.",
)
def dashboard_after_rollups_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
    # Driven by the change log, not by materialization events: several rollup refreshes between two ticks
    # make one dashboard refresh, and a tick with nothing pending makes none.
    with warehouse.connect() as conn:
        newest_change, last_refresh, never_refreshed, universe_moved, rollups_pending_since = conn.execute(
            query("dashboard/pending_refresh")).fetchone()
    if newest_change is not None:
        # Bars the rollups have not taken in yet would show in the latest price but not in the 7- and 30-day
        # figures: wait for the rollups (their sensor is on it), but not for ever under a stream of loads.
        if rollups_pending_since is not None and datetime.now(UTC) - rollups_pending_since < ROLLUPS_GRACE:
            return dg.SkipReason(f"rollup changes through {newest_change} wait for the rollups to take in "
                                 f"the bars loaded since {rollups_pending_since:%H:%M:%S}")
        return dg.RunRequest(run_key=f"rollup-changes-through-{newest_change}")
    if never_refreshed:
        return dg.RunRequest(run_key="first-dashboard-refresh")
    if universe_moved:
        # Keyed by the last refresh: one run per move, and a later move gets a run of its own.
        return dg.RunRequest(run_key=f"universe-moved-after-refresh-{last_refresh}")
    return dg.SkipReason("the dashboard is up to date with the rollups")
