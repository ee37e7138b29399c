"""``incoming_files_sensor``: files dropped into ``$CHURN_HOME/incoming/`` land and refresh.

It validates each file (reading only the file, never the warehouse: DuckDB allows one writer and
the pipeline may hold it), quarantines bad ones with a reason, and requests one run that appends
the good ones to ``raw_*`` and refreshes everything downstream except the model group (retraining
is the drift check's call). Run keys are content hashes. Runs by default.

A file is landed, quarantined with a true reason, or retried; never lost:

* files above ``CHURN_INCOMING_CHECK_MAX_BYTES`` get only the cheap checks here (a full read of a
  gigabyte would outlast the tick's timeout); the run validates them and quarantines with the
  reason, file by file, so one bad file never blocks the good ones;
* the cursor remembers which files a run was requested for, so a tick does not request them
  again while it is queued or running. Once that run has *finished* (or no run with its key
  appeared within ``REQUEST_TIMEOUT_SECONDS``), the files are released: a file still in
  ``incoming/`` is looked at again, and requested under a new run key (the daemon never
  launches a run key twice). After ``MAX_ATTEMPTS`` failed runs it is quarantined, naming them.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from churn.ingest.incoming import candidate_files, content_hash, quarantine
from churn.ingest.landing import SourceFileError
from churn.settings import load_settings
from churn.sources.registry import source_for
from churn_assets.partitions import full_range_tags

REQUEST_TIMEOUT_SECONDS = 600.0
"""A request whose run never appeared (daemon stopped, run deleted) is dropped after this."""
MAX_ATTEMPTS = 3
"""Failed landing runs before a file is quarantined instead of retried."""
RUN_KEY_TAG = "dagster/run_key"
"""The tag Dagster puts on a run launched for a sensor's ``RunRequest(run_key=...)``."""

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
    # the source's own column names (the sensor never reads the warehouse: the environment's
    # source, which is the one the landing run appends to unless a run overrode it)
    source = source_for(settings.source_config)
    cursor = Cursor.load(context.cursor)
    now = time.time()
    failed_runs = cursor.release_finished(context.instance, now)
    accepted: list[tuple[Path, str]] = []
    for path in candidate_files(settings.incoming_dir):
        if not _settled(path, now):
            continue
        digest = cursor.digest(path)
        if digest in cursor.requested:
            continue  # its run is queued or running; the asset moves it once landed
        landed = _already_landed(path, digest, settings.home / "landed")
        if landed is not None:
            quarantine(
                path,
                f"{path.name}: already ingested (same content as {landed.name}); not loaded again",
                settings.quarantine_dir,
            )
            context.log.info(f"{path.name}: duplicate of {landed.name}, quarantined")
            continue
        if cursor.attempts.get(digest, 0) >= MAX_ATTEMPTS:
            runs = ", ".join(failed_runs.get(digest, [])) or "see the runs tagged churn/trigger"
            reason = (
                f"{path.name}: its landing run failed {cursor.attempts[digest]} times "
                f"(last: {runs}); read that run's log, fix the cause, and drop the file again"
            )
            quarantine(path, reason, settings.quarantine_dir)
            context.log.warning(reason)
            cursor.attempts.pop(digest)
            continue
        small = path.stat().st_size <= settings.incoming_check_max_bytes
        try:
            source.validate_incoming(path, contents=small)
        except SourceFileError as error:
            target = quarantine(path, str(error), settings.quarantine_dir)
            context.log.warning(f"quarantined {target}: {error}")
            continue
        if not small:
            context.log.info(f"{path.name}: large file; the landing run validates its contents")
        accepted.append((path, digest))
    cursor.forget_missing()
    if not accepted:
        context.update_cursor(cursor.dump())
        return dg.SkipReason("no new valid files in incoming/")
    batch = hashlib.sha256("".join(sorted(d for _, d in accepted)).encode()).hexdigest()[:16]
    attempt = max(cursor.attempts.get(digest, 0) for _, digest in accepted)
    run_key = f"incoming-{batch}" + (f"-retry{attempt}" if attempt else "")
    for _, digest in accepted:
        cursor.requested[digest] = {"run_key": run_key, "at": now}
    context.update_cursor(cursor.dump())
    return dg.RunRequest(
        run_key=run_key,
        run_config={
            "ops": {"raw_tables": {"config": {"incoming_files": [str(p) for p, _ in accepted]}}}
        },
        tags=full_range_tags(context.instance)
        | {"churn/trigger": "incoming", "churn/files": str(len(accepted))},
    )


@dataclass
class Cursor:
    """What the sensor remembers between ticks, as JSON in its cursor.

    ``requested``: content hash -> the run key requested for it and when. ``attempts``: content
    hash -> how many runs requested for it failed. ``hashes``: path -> [size, mtime_ns, hash],
    so a large file waiting for its run is not hashed again on every tick (~2 s per 300 MB).
    """

    requested: dict[str, dict] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    hashes: dict[str, list] = field(default_factory=dict)

    def digest(self, path: Path) -> str:
        stat = path.stat()
        cached = self.hashes.get(str(path))
        if cached is not None and cached[:2] == [stat.st_size, stat.st_mtime_ns]:
            return cached[2]
        digest = content_hash(path)
        self.hashes[str(path)] = [stat.st_size, stat.st_mtime_ns, digest]
        return digest

    def forget_missing(self) -> None:
        self.hashes = {p: entry for p, entry in self.hashes.items() if Path(p).exists()}

    @classmethod
    def load(cls, text: str | None) -> Cursor:
        data = json.loads(text) if text else {}
        if "requested" not in data:  # the earlier format: {hash: run_key}
            return cls({digest: {"run_key": key, "at": 0.0} for digest, key in data.items()})
        return cls(data["requested"], data.get("attempts", {}), data.get("hashes", {}))

    def dump(self) -> str:
        return json.dumps(
            {"requested": self.requested, "attempts": self.attempts, "hashes": self.hashes}
        )

    def release_finished(self, instance: dg.DagsterInstance, now: float) -> dict[str, list[str]]:
        """Forget the requests whose run has finished (or never appeared); count the failed
        ones. Returns content hash -> ids of the failed runs released this tick."""
        failed: dict[str, list[str]] = {}
        for key in {entry["run_key"] for entry in self.requested.values()}:
            runs = instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: key}), limit=1)
            digests = [d for d, entry in self.requested.items() if entry["run_key"] == key]
            if runs:
                if runs[0].status not in FINISHED:
                    continue
                unsuccessful = runs[0].status != dg.DagsterRunStatus.SUCCESS
            else:
                oldest = min(self.requested[d]["at"] for d in digests)
                if now - oldest < REQUEST_TIMEOUT_SECONDS:
                    continue
                unsuccessful = False
            for digest in digests:
                del self.requested[digest]
                if unsuccessful:
                    self.attempts[digest] = self.attempts.get(digest, 0) + 1
                    failed.setdefault(digest, []).append(runs[0].run_id)
                else:
                    self.attempts.pop(digest, None)
        return failed


FINISHED = {
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
}
