"""``incoming_files_sensor``: files dropped into ``$CHURN_HOME/incoming/`` land and refresh.

It validates each file (reading only the file, never the warehouse: DuckDB allows one writer and
the pipeline may hold it), quarantines bad ones with a reason, and requests one run that appends
the good ones to ``raw_*`` and refreshes everything downstream except the model group (retraining
is the drift check's call). Run keys are content hashes. Runs by default.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import dagster as dg

from churn.ingest.incoming import candidate_files, content_hash, quarantine, validate_file
from churn.ingest.landing import SourceFileError
from churn.settings import load_settings
from churn_assets.partitions import full_range_tags

SETTLE_SECONDS = 5.0
"""A file younger than this may still be being copied; it is looked at on a later tick."""

INCOMING_SELECTION = (
    dg.AssetSelection.groups("raw").downstream() - dg.AssetSelection.groups("model").downstream()
) | dg.AssetSelection.groups("monitoring")
"""Raw -> staging -> features -> reports; retraining is left to the drift check."""


def _settled(path: Path, now: float) -> bool:
    return now - path.stat().st_mtime >= SETTLE_SECONDS


def _already_landed(path: Path, digest: str, landed_dir: Path) -> Path | None:
    candidate = landed_dir / f"{digest[:12]}_{path.name}"
    if candidate.exists():
        return candidate
    matches = list(landed_dir.glob(f"{digest[:12]}_*")) if landed_dir.exists() else []
    return matches[0] if matches else None


@dg.sensor(
    name="incoming_files_sensor",
    target=INCOMING_SELECTION,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=15,
    description="New files in $CHURN_HOME/incoming/ -> validate -> append to raw_* and refresh "
    "downstream; bad files go to quarantine/ with a reason.",
)
def incoming_files_sensor(context: dg.SensorEvaluationContext):
    settings = load_settings()
    requested: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    now = time.time()
    accepted: list[tuple[Path, str]] = []
    for path in candidate_files(settings.incoming_dir):
        if not _settled(path, now):
            continue
        digest = content_hash(path)
        landed = _already_landed(path, digest, settings.home / "landed")
        if landed is not None:
            quarantine(
                path,
                f"{path.name}: already ingested (same content as {landed.name}); not loaded again",
                settings.quarantine_dir,
            )
            context.log.info(f"{path.name}: duplicate of {landed.name}, quarantined")
            continue
        if digest in requested:
            continue  # its run is queued or running; the asset moves it once landed
        try:
            validate_file(path)
        except SourceFileError as error:
            target = quarantine(path, str(error), settings.quarantine_dir)
            context.log.warning(f"quarantined {target}: {error}")
            continue
        accepted.append((path, digest))
    if not accepted:
        return dg.SkipReason("no new valid files in incoming/")
    batch = hashlib.sha256("".join(sorted(d for _, d in accepted)).encode()).hexdigest()[:16]
    run_key = f"incoming-{batch}"
    for _, digest in accepted:
        requested[digest] = run_key
    context.update_cursor(json.dumps(requested))
    return dg.RunRequest(
        run_key=run_key,
        run_config={
            "ops": {"raw_tables": {"config": {"incoming_files": [str(p) for p, _ in accepted]}}}
        },
        tags=full_range_tags(settings)
        | {"churn/trigger": "incoming", "churn/files": str(len(accepted))},
    )
