"""Run tags the instance's run queue reads (dagster.yaml `concurrency: runs:`, deploy/helm/values.yaml).

Every job of a domain carries one ``cryptobt/kind``; ``dagster/priority`` orders the queue (higher first,
first-in-first-out within a priority), so a fresh file is loaded before queued backtests however many wait.
"""

KIND_TAG = "cryptobt/kind"
PRIORITY_TAG = "dagster/priority"

INGEST_RUN_TAGS = {KIND_TAG: "ingest", PRIORITY_TAG: "10"}
REFRESH_RUN_TAGS = {KIND_TAG: "refresh", PRIORITY_TAG: "5"}
MAINTENANCE_RUN_TAGS = {KIND_TAG: "maintenance", PRIORITY_TAG: "0"}
# Limited to a share of the run slots in dagster.yaml: backtests never starve ingest.
BACKTEST_RUN_TAGS = {KIND_TAG: "backtest", PRIORITY_TAG: "-5"}
