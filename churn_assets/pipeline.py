"""``make pipeline``: materialize the whole graph once, over every observation month.

These are the contract's plain commands, in two steps, because the observation calendar is
whatever the landed data says (:mod:`churn_assets.partitions`)::

    dagster asset materialize --select 'group:raw or group:staging' -m churn_assets.definitions
    dagster asset materialize --select 'not (group:raw or group:staging)' \
        --partition-range FIRST...LAST -m churn_assets.definitions

The first lands and stages the source, which writes its months into the Dagster instance; the
second runs everything downstream over them (one run: every asset has a single-run backfill
policy). On a fresh instance no month exists before the first step, so the range cannot be known
earlier. Both steps need the same persistent instance: ``DAGSTER_HOME``, which the Makefile
sets and which this module defaults to ``$CHURN_HOME/dagster_home`` when unset.

The run uses the code location's in-process executor (``churn_assets.definitions``), as runs
launched from the Dagster UI do: every step writes the one DuckDB file, so they run one at a time
anyway, and the multiprocess executor's process launch and code-location import per step cost
~5 s each (82 s against 10 s for the data graph at the default size).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from churn.settings import (
    DAGSTER_HOME_ENV,
    Settings,
    bentoml_home,
    child_environment,
    load_settings,
)

QUIET_DAGSTER_CLI = "ignore::FutureWarning:click.core"
"""``PYTHONWARNINGS`` for the ``dagster`` CLI: its ``asset materialize`` and ``dev`` commands warn
that they are superseded (a ``SupersessionWarning``, a FutureWarning raised from click) before
any churn code can filter it; the contract names these commands, so the notice is noise here."""


def run_log_config(log_level: str = "info") -> str:
    """``--config-json`` for both steps: the run's console log at ``CHURN_LOG_LEVEL``.

    Dagster's default console logger prints every DEBUG event (step inputs and outputs loaded
    and handled, engine events: 447 lines for the default graph); INFO keeps what the assets
    say (progress, row counts, rejects, the gate's decision) and every warning and failure."""
    level = log_level.upper()
    return json.dumps({"loggers": {"console": {"config": {"log_level": level}}}})


LAND = "group:raw or group:staging"
"""Step one: land and stage the source (this writes the observation calendar)."""
DOWNSTREAM = f"not ({LAND})"
"""Step two: everything downstream, over the calendar's months."""


def cli_environment(settings: Settings | None = None) -> dict[str, str]:
    """This process's environment with the CLI's supersession notice silenced, and
    ``DAGSTER_HOME`` defaulted: both steps must share one instance (it holds the calendar)."""
    known = child_environment().get("PYTHONWARNINGS")
    env = child_environment(
        PYTHONWARNINGS=f"{known},{QUIET_DAGSTER_CLI}" if known else QUIET_DAGSTER_CLI
    )
    if settings is not None and settings.dagster_home is not None:
        env[DAGSTER_HOME_ENV] = str(settings.dagster_home)
    return env


def dagster_home(settings: Settings) -> Path:
    """``DAGSTER_HOME``, else ``$CHURN_HOME/dagster_home`` (created): the two steps share it."""
    home = settings.dagster_home or settings.home / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    return home.resolve()


def land_command(log_level: str = "info") -> list[str]:
    return [
        "dagster",
        "asset",
        "materialize",
        "--select",
        LAND,
        "-m",
        "churn_assets.definitions",
        "--config-json",
        run_log_config(log_level),
    ]


def materialize_command(
    partition_range: str, selection: str = DOWNSTREAM, log_level: str = "info"
) -> list[str]:
    """The second step: ``selection`` over ``partition_range`` (``FIRST...LAST``)."""
    return [
        "dagster",
        "asset",
        "materialize",
        "--select",
        selection,
        "--partition-range",
        partition_range,
        "-m",
        "churn_assets.definitions",
        "--config-json",
        run_log_config(log_level),
    ]


def calendar_argument(home: Path) -> str | None:
    """The ``--partition-range`` of every observation date the instance at ``home`` holds."""
    import dagster as dg

    from churn_assets.partitions import partition_range_argument

    with dg.DagsterInstance.from_config(str(home)) as instance:
        return partition_range_argument(instance)


def release_stale_claims(settings: Settings) -> None:
    """Before launching: a run a killed process left STARTED would hold the warehouse pool
    forever and block this one; mark such runs failed and free their slots, saying so."""
    if settings.dagster_home is None:
        return  # an ephemeral instance per run: nothing can be left over
    import dagster as dg

    from churn_assets.stale_runs import release_stale_runs

    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        for stale in release_stale_runs(instance):
            print(f"  {stale.describe()}", flush=True)


def main() -> int:
    settings = load_settings()
    settings = replace(settings, dagster_home=dagster_home(settings))
    release_stale_claims(settings)
    env = cli_environment(settings)
    started, started_at = time.perf_counter(), time.time()
    for step in (land_command(settings.log_level), None):
        if step is None:
            found = calendar_argument(settings.dagster_home)
            if found is None:
                print("pipeline failed: staging wrote no observation date", file=sys.stderr)
                return 1
            step = materialize_command(found, log_level=settings.log_level)
        shown = step[: step.index("--config-json")]  # the plain command; the log level is ours
        print(f"$ {' '.join(shlex.quote(part) for part in shown)}", flush=True)
        completed = subprocess.run(step, env=env, check=False)
        if completed.returncode != 0:
            seconds = time.perf_counter() - started
            print(f"pipeline failed after {seconds:.0f} s (see the log above)", file=sys.stderr)
            return completed.returncode
    seconds = time.perf_counter() - started
    print(f"pipeline done in {seconds:.0f} s\n" + summary(settings, since=started_at))
    _write_sample(settings)
    return 0


def data_files(settings: Settings) -> list[Path]:
    """The files the run read: the synthetic generator's raw files, or the config's tables."""
    config = settings.source_config
    if config is None:
        return sorted(p for p in settings.raw_dir.rglob("*") if p.is_file())
    tables = [config.flat.path] if config.flat is not None else []
    return tables + [table.path for table in config.tables.values()]


def summary(settings: Settings, since: float = 0.0) -> str:
    """Where every output went: the export files this run wrote (modified after ``since``, a
    ``time.time()``), the data files read, the warehouse, reports, models and Dagster instance
    (the config's own path is what the user typed, so it is not repeated)."""
    from churn_assets.defs.scoring.assets import EXPORT_FOLDER

    exports = settings.home / EXPORT_FOLDER
    files = [p for p in exports.glob("*") if p.is_file()] if exports.is_dir() else []
    written = sorted(p.name for p in files if p.stat().st_mtime >= since)
    lines = [
        f"  exports:   {exports}/ ({', '.join(written) if written else 'none written'})",
        f"  data:      {', '.join(str(p) for p in data_files(settings)) or '(none found)'}",
        f"  warehouse: {settings.warehouse_location}",
        f"  reports:   {settings.reports_dir} (eda/, drift/, model_evaluation/, "
        "retention_<date>.html)",
        f"  models:    BentoML store {bentoml_home()} (churn_model, churn_service)",
        f"  dagster:   {settings.dagster_home or '(DAGSTER_HOME unset)'}",
    ]
    return "\n".join(lines)


def _write_sample(settings) -> None:
    """A /score body for the new champion, so the README's curl works right away."""
    try:
        from churn_assets.demo import sample_request

        path = sample_request(settings.home / "sample_request.json")
    except Exception as error:  # a missing champion (gate refused) is not a pipeline failure
        print(f"  (no sample request written: {error})")
        return
    print(f"  sample:    {path}  (curl -d @{path} ... /score)")


if __name__ == "__main__":
    sys.exit(main())
