"""``make pipeline``: materialize the whole graph once, over every observation month.

This is the contract's plain command with the partition range filled in::

    dagster asset materialize --select '*' --partition-range FIRST...LAST \\
        -m churn_assets.definitions

The range is needed because the snapshot assets are monthly-partitioned; their single-run
backfill policy makes the whole range one run.

The run uses the code location's in-process executor (``churn_assets.definitions``), as runs
launched from the Dagster UI do: every step writes the one DuckDB file, so they run one at a time
anyway, and the multiprocess executor's process launch and code-location import per step cost
~5 s each (82 s against 10 s for the data graph at the default size).
"""

from __future__ import annotations

import subprocess
import sys
import time

from churn.settings import Settings, bentoml_home, child_environment, load_settings
from churn_assets.partitions import partition_range_argument

QUIET_DAGSTER_CLI = "ignore::FutureWarning:click.core"
"""``PYTHONWARNINGS`` for the ``dagster`` CLI: its ``asset materialize`` and ``dev`` commands warn
that they are superseded (a ``SupersessionWarning``, a FutureWarning raised from click) before
any churn code can filter it; the contract names these commands, so the notice is noise here."""


def cli_environment() -> dict[str, str]:
    """This process's environment with the CLI's supersession notice silenced."""
    known = child_environment().get("PYTHONWARNINGS")
    return child_environment(
        PYTHONWARNINGS=f"{known},{QUIET_DAGSTER_CLI}" if known else QUIET_DAGSTER_CLI
    )


def materialize_command(selection: str = "*") -> list[str]:
    settings = load_settings()
    return [
        "dagster",
        "asset",
        "materialize",
        "--select",
        selection,
        "--partition-range",
        partition_range_argument(settings),
        "-m",
        "churn_assets.definitions",
    ]


def release_stale_claims(settings: Settings) -> None:
    """Before launching: a run a killed process left STARTED would hold the warehouse pool
    forever and block this one; mark such runs failed and free their slots, saying so."""
    if settings.dagster_home is None:
        return  # an ephemeral instance per run: nothing can be left over
    import dagster as dg

    from churn_assets.stale_runs import release_stale_runs

    with dg.DagsterInstance.get() as instance:
        for stale in release_stale_runs(instance):
            print(f"  {stale.describe()}", flush=True)


def main() -> int:
    settings = load_settings()
    release_stale_claims(settings)
    command = materialize_command()
    print(f"$ {' '.join(command)}", flush=True)
    started = time.perf_counter()
    completed = subprocess.run(command, env=cli_environment(), check=False)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        print(f"pipeline failed after {seconds:.0f} s (see the log above)", file=sys.stderr)
        return completed.returncode
    print(
        f"pipeline done in {seconds:.0f} s\n"
        f"  source:    {settings.source}\n"
        f"  warehouse: {settings.warehouse_location}\n"
        f"  raw files: {settings.raw_dir if settings.is_synthetic else settings.source}\n"
        f"  reports:   {settings.reports_dir} (eda/, drift/, model_evaluation/)\n"
        f"  models:    BentoML store {bentoml_home()} (churn_model, churn_service)\n"
        f"  dagster:   {settings.dagster_home or '(DAGSTER_HOME unset)'}"
    )
    _write_sample(settings)
    return 0


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
