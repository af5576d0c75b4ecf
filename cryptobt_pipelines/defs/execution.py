"""How the runs of this code location execute: every step in the run's own process, event writes batched.

- ``in_process_executor`` for every job (and the asset backfills of the UI): Dagster's default executor starts a
  fresh Python process per step, which imports Dagster and this code location again, then waits for it to wind
  down (3.8 s and 2.7 s of the nightly backtest run on the project machine, bench/engine.py). Our steps are
  database-bound and mostly wait on one another; one process per run is enough.
- ``DAGSTER_EVENT_BATCH_SIZE``: a run over many partitions records one materialization per partition, which
  Dagster writes one at a time (four statements each) unless batching is on; then one INSERT takes the lot
  (263 materializations: 0.4 s instead of 3-10 s). Dagster reads only the environment for it: set here, in the
  code every run worker imports, so compose, Kubernetes run pods and ``dagster dev`` all get it (an explicit
  environment value wins). Safe by Dagster's design: only events that come as one batch (the partitions of one
  output, the planned events of one run) are held back, and a failed batch is written one by one.
"""

import os

import dagster as dg

EVENT_BATCH_SIZE = "1000"

os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)


@dg.definitions
def execution() -> dg.Definitions:
    return dg.Definitions(executor=dg.in_process_executor)
