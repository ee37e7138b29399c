"""The production instance (deploy/dagster.yaml) on a real PostgreSQL server, end to end.

A throwaway server from Debian's ``postgresql`` package (``tests/postgres_support.py``; no mock),
an instance loaded from a ``DAGSTER_HOME`` holding deploy/dagster.yaml with the connection in the
``DAGSTER_PG_*`` variables, the whole asset graph materialized on the small synthetic data through
that instance, and then the run, its materializations, its check results, the observation
calendar and the warehouse pool's limit read back from Postgres: through Dagster's instance API
and with plain SQL on Dagster's tables, so the rows are known to be in Postgres and not in a
SQLite file beside them.

Skipped only when no PostgreSQL binaries (or no ``deploy`` extra) exist and ``CI`` is unset;
under CI that is a failure (``.ci/run`` installs the package).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import dagster as dg
import pytest
import yaml

from churn_assets.partitions import calendar_keys
from churn_assets.resources import WAREHOUSE_POOL
from tests.conftest import SESSION_HOME
from tests.graph import GraphRun, materialize_graph, own_bentoml_store
from tests.postgres_support import PostgresServer, bin_dir, postgres_server

REPO = Path(__file__).resolve().parents[1]
DEPLOY_YAML = REPO / "deploy" / "dagster.yaml"
DEV_YAML = REPO / "config" / "dagster.yaml"
PG_VARIABLES = (
    "DAGSTER_PG_HOST",
    "DAGSTER_PG_PORT",
    "DAGSTER_PG_USER",
    "DAGSTER_PG_PASSWORD",
    "DAGSTER_PG_DB",
)


def _missing_or_fail(reason: str) -> None:
    """Skip with ``reason`` on a developer machine; fail under CI, which must run this test."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: .ci/run installs it)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    binaries = bin_dir()
    if binaries is None:
        _missing_or_fail(
            "no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql"
        )
    if find_spec("dagster_postgres") is None:
        _missing_or_fail("dagster-postgres is not installed: pip install -e '.[deploy]'")
    with postgres_server(binaries) as running:
        yield running


@dataclass
class PostgresRun:
    """The graph's run on the Postgres instance: the instance (still open), the in-process
    result, and the server to query directly."""

    instance: dg.DagsterInstance
    graph: GraphRun
    server: PostgresServer


@pytest.fixture(scope="module")
def pg_run(server: PostgresServer) -> Iterator[PostgresRun]:
    root = Path(os.path.realpath(SESSION_HOME)) / "postgres-instance"
    home, dagster_home = root / "home", root / "dagster_home"
    dagster_home.mkdir(parents=True)
    shutil.copy2(DEPLOY_YAML, dagster_home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in server.env.items():
            patch.setenv(name, value)
        patch.setenv("CHURN_HOME", str(home))
        with (
            own_bentoml_store(home / "bentoml"),
            dg.DagsterInstance.from_config(str(dagster_home)) as instance,
        ):
            graph = materialize_graph(home, "*", instance=instance)
            yield PostgresRun(instance, graph, server)


def _sql(server: PostgresServer, query: str, params: tuple = ()) -> list[tuple]:
    con = server.connect()
    try:
        with con.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall()
    finally:
        con.close()


# --- the file itself (no server) ----------------------------------------------------------------


def test_the_connection_comes_only_from_the_environment() -> None:
    """No host, user or password is baked into the production instance: every connection field
    is Dagster's ``env:`` form, one ``DAGSTER_PG_*`` variable each."""
    config = yaml.safe_load(DEPLOY_YAML.read_text())
    connection = config["storage"]["postgres"]["postgres_db"]
    assert connection == {
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "port": {"env": "DAGSTER_PG_PORT"},
        "username": {"env": "DAGSTER_PG_USER"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "db_name": {"env": "DAGSTER_PG_DB"},
        "scheme": "postgresql+psycopg2",
    }


def test_it_keeps_the_development_instance_s_pool_limit_and_telemetry_choice() -> None:
    """The DuckDB writer pool (limit 1) and telemetry off, exactly as config/dagster.yaml."""
    deploy, dev = (yaml.safe_load(p.read_text()) for p in (DEPLOY_YAML, DEV_YAML))
    assert deploy["concurrency"] == dev["concurrency"]
    assert deploy["telemetry"] == dev["telemetry"]
    assert deploy["run_coordinator"]["class"] == "QueuedRunCoordinator"


def test_a_missing_variable_is_named_when_the_instance_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if find_spec("dagster_postgres") is None:
        _missing_or_fail("dagster-postgres is not installed: pip install -e '.[deploy]'")
    shutil.copy2(DEPLOY_YAML, tmp_path / "dagster.yaml")
    for name in PG_VARIABLES:
        monkeypatch.setenv(name, "x")
    monkeypatch.setenv("DAGSTER_PG_PORT", "5432")
    monkeypatch.delenv("DAGSTER_PG_PASSWORD")
    with pytest.raises(Exception, match="DAGSTER_PG_PASSWORD"):
        dg.DagsterInstance.from_config(str(tmp_path))


# --- the graph on a real server -----------------------------------------------------------------


@pytest.mark.slow
def test_the_instance_keeps_runs_events_and_schedules_in_postgres(pg_run: PostgresRun) -> None:
    from dagster_postgres import (
        PostgresEventLogStorage,
        PostgresRunStorage,
        PostgresScheduleStorage,
    )

    instance = pg_run.instance
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"


@pytest.mark.slow
def test_the_run_and_its_success_are_read_back_from_postgres(pg_run: PostgresRun) -> None:
    result = pg_run.graph.result
    assert result.success
    run_id = result.run_id
    record = pg_run.instance.get_run_by_id(run_id)
    assert record is not None and record.status == dg.DagsterRunStatus.SUCCESS
    rows = _sql(pg_run.server, "SELECT run_id, status FROM runs ORDER BY create_timestamp")
    assert rows[-1] == (run_id, "SUCCESS"), rows
    assert all(status == "SUCCESS" for _, status in rows), rows


@pytest.mark.slow
def test_every_materialization_of_the_run_is_in_postgres(pg_run: PostgresRun) -> None:
    result = pg_run.graph.result
    expected = {e.asset_key for e in result.get_asset_materialization_events()}
    assert dg.AssetKey("customer_scores") in expected
    assert dg.AssetKey("champion_model") in expected
    assert dg.AssetKey("churn_bento") in expected
    stored = _sql(
        pg_run.server,
        "SELECT DISTINCT asset_key FROM event_logs "
        "WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
        (result.run_id,),
    )
    assert {dg.AssetKey.from_db_string(key) for (key,) in stored} == expected
    for key in expected:
        latest = pg_run.instance.get_latest_materialization_event(key)
        assert latest is not None, key.to_user_string()
        assert latest.run_id == result.run_id, key.to_user_string()


@pytest.mark.slow
def test_every_check_result_of_the_run_is_in_postgres(pg_run: PostgresRun) -> None:
    checks = pg_run.graph.checks()
    assert checks, "the graph ran no asset checks"
    run_id = pg_run.graph.result.run_id
    rows = _sql(
        pg_run.server,
        "SELECT asset_key, check_name, execution_status FROM asset_check_executions "
        "WHERE run_id = %s",
        (run_id,),
    )
    stored = {
        f"{dg.AssetKey.from_db_string(key).to_user_string()}:{name}": status
        for key, name, status in rows
    }
    assert stored == {
        name: "SUCCEEDED" if evaluation.passed else "FAILED" for name, evaluation in checks.items()
    }
    keys = [dg.AssetCheckKey(e.asset_key, e.check_name) for e in checks.values()]
    latest = pg_run.instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    assert {key: record.run_id for key, record in latest.items()} == dict.fromkeys(keys, run_id)


@pytest.mark.slow
def test_the_calendar_and_the_warehouse_pool_live_in_postgres(pg_run: PostgresRun) -> None:
    """The observation months (dynamic partitions, written by staging) and the pool's limit of
    one, which the instance applied while the steps claimed their slots."""
    months = calendar_keys(pg_run.instance)
    assert months
    stored = _sql(pg_run.server, "SELECT partition FROM dynamic_partitions ORDER BY partition")
    assert [p for (p,) in stored] == sorted(months)
    assert pg_run.instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL).slot_count == 1
    limits = _sql(
        pg_run.server,
        "SELECT concurrency_key, count(*) FROM concurrency_slots "
        "WHERE deleted = false GROUP BY concurrency_key",
    )
    assert (WAREHOUSE_POOL, 1) in limits
