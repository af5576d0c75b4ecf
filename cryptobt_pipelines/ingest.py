"""Files in, bars stored: what `cryptobt ingest` and the landing-folder sensor's runs both do."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptobt_pipelines.sources.batch import SourceError
from cryptobt_pipelines.sources.files import read_price_file
from cryptobt_pipelines.warehouse.load import LoadReport, Progress, load_batch


@dataclass
class FileOutcome:
    path: Path
    report: LoadReport | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def ingest_file(
    path: Path,
    *,
    url: str | None = None,
    symbol: str | None = None,
    format: str | None = None,
    run_id: str | None = None,
    progress: Progress | None = None,
) -> FileOutcome:
    """Read and load one file. A file that cannot be read at all is reported, not raised, and writes nothing;
    database errors do raise, so the caller's run fails and is retried with the file still in place."""
    try:
        batch = read_price_file(path, symbol=symbol, format=format)
    except (SourceError, OSError) as error:
        return FileOutcome(path, error=str(error).splitlines()[0] if str(error) else type(error).__name__)
    return FileOutcome(path, report=load_batch(batch, url=url, run_id=run_id, progress=progress))


def settle_landing_file(outcome: FileOutcome, landing: Path) -> Path:
    """Move a landing file aside: to processed/, or to failed/ with a .reason file beside it."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = landing / ("processed" if outcome.ok else "failed")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stamp}-{outcome.path.name}"
    shutil.move(str(outcome.path), target)
    if not outcome.ok:
        target.with_name(target.name + ".reason").write_text(outcome.error + "\n")
    return target
