"""The landing folder (drop a price file in, and a run loads it) and the universe file."""


import hashlib
import json
import time
from pathlib import Path

import dagster as dg

from cryptobt_pipelines.defs.ingest.assets import CRYPTOS, PRICE_FILES, PriceFilesConfig, ingest_files_job
from cryptobt_pipelines.defs.partitions import crypto_partitions
from cryptobt_pipelines.defs.resources import LandingResource
from cryptobt_pipelines.defs.run_tags import INGEST_RUN_TAGS
from cryptobt_pipelines.warehouse.universe import UNIVERSE_CSV, read_universe

# A file still being written changes size or mtime: wait until it has been quiet this long.
SETTLE_SECONDS = 2.0
FILES_PER_RUN = 50
IGNORED_SUFFIXES = {".part", ".tmp", ".crdownload", ".reason"}


def _file_key(path: Path) -> str:
    stat = path.stat()
    return f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}"


def landing_files(folder: Path) -> list[Path]:
    """Price files in the landing folder: not hidden, not partial downloads, not our own .reason notes."""
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix not in IGNORED_SUFFIXES
    )


@dg.sensor(
    job=ingest_files_job,
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Loads new files from the landing folder ($CRYPTOBT_HOME/landing) into market.prices.",
)
def landing_files_sensor(context: dg.SensorEvaluationContext, landing: LandingResource) -> dg.SensorResult:
    landing.folder.mkdir(parents=True, exist_ok=True)
    # The cursor holds the files already requested that are still in the folder (runs move files aside),
    # so a file is requested once; touching or replacing it makes it new again.
    requested = set(json.loads(context.cursor)) if context.cursor else set()
    present = {_file_key(p): p for p in landing_files(landing.folder)}
    now = time.time()
    new = sorted(
        key for key, path in present.items()
        if key not in requested and now - path.stat().st_mtime >= SETTLE_SECONDS
    )
    runs = []
    for first in range(0, len(new), FILES_PER_RUN):
        chunk = new[first : first + FILES_PER_RUN]
        runs.append(
            dg.RunRequest(
                run_key=hashlib.sha1("|".join(chunk).encode()).hexdigest(),
                run_config=dg.RunConfig(
                    ops={PRICE_FILES.to_python_identifier(): PriceFilesConfig(paths=[str(present[k]) for k in chunk])}
                ),
                tags={"cryptobt/files": str(len(chunk))},
            )
        )
    cursor = json.dumps(sorted((requested & set(present)) | set(new)))
    if not runs:
        return dg.SensorResult(skip_reason=f"no new files in {landing.folder}", cursor=cursor)
    return dg.SensorResult(run_requests=runs, cursor=cursor)


@dg.sensor(
    target=[CRYPTOS],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Materializes market/cryptos when assets/cryptos.csv and the crypto partitions disagree.",
)
def universe_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    symbols = set(read_universe()["symbol"])
    partitions = set(context.instance.get_dynamic_partitions(crypto_partitions.name))
    digest = hashlib.sha256(UNIVERSE_CSV.read_bytes()).hexdigest()
    if symbols == partitions:
        return dg.SkipReason(f"{len(partitions)} crypto partitions match {UNIVERSE_CSV.name}")
    # The key names the file and the partitions it found: the same disagreement is requested once.
    state = hashlib.sha256(("\n".join(sorted(partitions)) + digest).encode()).hexdigest()
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=state, tags=INGEST_RUN_TAGS)])
