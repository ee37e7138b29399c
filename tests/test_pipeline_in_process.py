"""``make pipeline`` runs its two ``dagster asset materialize`` commands in its own process.

The full run is covered by the tests that call ``python -m churn_assets.pipeline`` (calendar,
bring-your-own-data and event-log examples); this checks the runner's own guard."""

from __future__ import annotations

import pytest

from churn_assets.pipeline import land_command, materialize_command, run_step


def test_only_the_materialize_command_is_run_in_process():
    with pytest.raises(ValueError, match="not a dagster asset materialize command"):
        run_step(["dagster", "dev", "-m", "churn_assets.definitions"], {"DAGSTER_HOME": "/x"})


def test_the_commands_it_runs_are_the_plain_cli_commands():
    assert land_command()[:3] == ["dagster", "asset", "materialize"]
    assert materialize_command("2025-01-01...2025-02-01")[:3] == ["dagster", "asset", "materialize"]
