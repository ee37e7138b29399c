"""Runs left STARTED by a killed process: found, marked failed, and their pool slots freed.

A run killed with SIGKILL (``kill -9``, the OOM killer, a lost machine) never records its end:
the instance keeps it STARTED with its claim on the ``duckdb_warehouse`` pool, and every later
run waits for that slot forever ("Step blocked by limit for pool"). Dagster's run monitoring
daemon would notice, but ``make pipeline`` runs without a daemon. So before it launches, the
pipeline checks every unfinished run of its instance:

* the run's process id is in its first engine event that carries one ("Started process for
  run (pid: N)", "Executing steps in process (pid: N)", the multiprocess parent's);
* a process that no longer exists, is a zombie, or started *after* the run did (the pid was
  reused), cannot be running it;
* such a run is marked failed (``report_run_failed``, with the reason) and its concurrency
  slots are freed. A finished run still holding slots has them freed too.

A run whose process is alive is left alone, and a run without a recorded pid (queued, or
launched elsewhere) is reported with the manual recovery, never guessed at. This assumes the
instance's runs were launched on this machine, as ``make pipeline`` and ``dagster dev`` do.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg
import psutil

UNFINISHED = [
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
CLOCK_SLACK_SECONDS = 2.0
"""A process may be recorded as started a moment after its run's start time."""


@dataclass(frozen=True)
class StaleRun:
    run_id: str
    pid: int | None
    action: str
    """``failed`` (marked failed, slots freed), ``slots_freed`` or ``unknown`` (left alone)."""

    def describe(self) -> str:
        if self.action == "failed":
            return (
                f"run {self.run_id} was left STARTED by process {self.pid}, which is gone: "
                "marked it failed and freed its warehouse pool slot"
            )
        if self.action == "slots_freed":
            return f"run {self.run_id} had finished but still held a pool slot: freed it"
        return (
            f"run {self.run_id} is unfinished and has no recorded process id: if no run is "
            f"really going, terminate it in the Dagster UI (Runs -> {self.run_id} -> "
            "Terminate, 'force termination'), then run this again to free its pool slot"
        )


def run_process_id(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid of the process that ran ``run_id``, from its first engine event naming one."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=50
    ).records
    for record in records:
        event = record.event_log_entry.dagster_event
        data = getattr(event, "event_specific_data", None) if event else None
        pid = getattr(data, "metadata", {}).get("pid") if data is not None else None
        if pid is not None:
            try:
                return int(pid.value)
            except (TypeError, ValueError):
                continue
    return None


def process_running_since(pid: int, started_at: float) -> bool:
    """Whether ``pid`` is a live process that existed when the run started at ``started_at``."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return process.create_time() <= started_at + CLOCK_SLACK_SECONDS
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's live process: not ours to judge
        return True


def release_stale_runs(instance: dg.DagsterInstance) -> list[StaleRun]:
    """Mark the runs whose process is gone as failed and free their pool slots; free slots
    still held by finished runs. Returns what was found, for the caller to print."""
    found: list[StaleRun] = []
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=UNFINISHED)):
        run = record.dagster_run
        pid = run_process_id(instance, run.run_id)
        if pid is None:
            if run.status != dg.DagsterRunStatus.STARTING:
                found.append(StaleRun(run.run_id, None, "unknown"))
            continue
        started_at = record.start_time or record.create_timestamp.timestamp()
        if process_running_since(pid, started_at):
            continue
        instance.report_run_failed(
            run,
            message=f"Marked failed by the churn pipeline: the run's process (pid {pid}) is gone "
            "(killed?) and the run can never finish; its warehouse pool slot is freed.",
        )
        _free_slots(instance, run.run_id)
        found.append(StaleRun(run.run_id, pid, "failed"))
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        holders = storage.get_concurrency_run_ids()
        if holders:
            finished = instance.get_run_records(
                filters=dg.RunsFilter(run_ids=list(holders), statuses=FINISHED)
            )
            for record in finished:
                if _free_slots(instance, record.dagster_run.run_id):
                    found.append(StaleRun(record.dagster_run.run_id, None, "slots_freed"))
    return found


def _free_slots(instance: dg.DagsterInstance, run_id: str) -> bool:
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return False
    held = run_id in storage.get_concurrency_run_ids()
    storage.free_concurrency_slots_for_run(run_id)
    return held
