"""The bring-your-own-data shapes on Spark: a flat customer table and an event log whose churn
is inactivity, from raw files to labels, value for value with DuckDB.

The code location fixes its partitions from ``CHURN_SOURCE`` when it loads, so each source runs
in its own process (as ``make pipeline`` would), materializing the raw, staging, snapshot,
feature and label assets twice: into one home with the DuckDB engine, into another with local
Spark. Every table of the data layer is then compared row for row (DOUBLEs within a relative
1e-9, everything else exactly), rejects and the recorded inference included.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.byod_support import REPO
from tests.event_log_support import write_log

pytestmark = pytest.mark.spark

RUN_BOTH_ENGINES = """
import sys
from pathlib import Path

import dagster as dg

from churn.engine.spark import stop_sessions
from tests.graph import materialize_graph

root = Path(sys.argv[1])
selection = dg.AssetSelection.groups("raw", "staging") | dg.AssetSelection.assets(
    "customer_snapshots", "customer_features", "churn_labels"
)
try:
    for engine in ("duckdb", "spark"):
        run = materialize_graph(root / engine, selection, engine=engine)
        assert run.result.success, engine
finally:
    stop_sessions()
"""
TABLES = (
    "stg_customers",
    "stg_customers_rejects",
    "stg_events",
    "stg_events_rejects",
    "stg_cancellations",
    "customer_snapshots",
    "customer_features",
    "churn_labels",
)
RELATIVE_TOLERANCE = 1e-9


def _flat_source(folder: Path) -> Path:
    shutil.copytree(REPO / "examples" / "flat", folder)
    return folder / "source.yaml"


def _event_log_source(folder: Path) -> Path:
    return write_log(folder, customers=250, seed=5)


def _run(root: Path, source: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURN_")}
    for engine in ("duckdb", "spark"):
        (root / engine / "raw").mkdir(parents=True)
    completed = subprocess.run(
        [sys.executable, "-c", RUN_BOTH_ENGINES, str(root)],
        cwd=REPO,
        env=env | {"CHURN_SOURCE": str(source), "CHURN_HOME": str(root / "duckdb")},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-6000:]


def _exists(home: Path, table: str) -> bool:
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return table in {row[0] for row in con.execute("SHOW TABLES").fetchall()}


def _table(home: Path, table: str) -> tuple[list[tuple], list[tuple[str, str]]]:
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        schema = [(n, k) for n, k, *_ in con.execute(f"DESCRIBE {table}").fetchall()]
        columns = ", ".join(f'"{n}"' for n, _ in schema if n != "_loaded_at")
        rows = con.execute(f"SELECT {columns} FROM {table} ORDER BY ALL").fetchall()
    finally:
        con.close()
    return rows, [(n, k) for n, k in schema if n != "_loaded_at"]


def _same(left, right, kind: str) -> bool:
    if left is None or right is None:
        return left is None and right is None
    if kind == "DOUBLE":
        return math.isclose(left, right, rel_tol=RELATIVE_TOLERANCE, abs_tol=0.0)
    return left == right


@pytest.fixture(scope="module", params=["flat", "event_log"])
def homes(request, tmp_path_factory) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp(f"spark-{request.param}")
    make = _flat_source if request.param == "flat" else _event_log_source
    _run(root, make(root / "source"))
    return request.param, root


def test_every_data_table_is_equal_on_spark(homes):
    shape, root = homes
    compared = {}
    for table in TABLES:
        if shape == "flat" and table.startswith(("stg_events", "stg_cancellations")):
            # A flat source has no event tables on either engine.
            assert not _exists(root / "duckdb", table) and not _exists(root / "spark", table)
            continue
        duck, schema = _table(root / "duckdb", table)
        spark, spark_schema = _table(root / "spark", table)
        assert spark_schema == schema, table
        assert len(spark) == len(duck), table
        differing = [
            (schema[i][0], d[:2], d[i], s[i])
            for d, s in zip(duck, spark, strict=True)
            for i, (_, kind) in enumerate(schema)
            if not _same(d[i], s[i], kind)
        ]
        assert not differing, f"{shape} {table}: {len(differing)} differ, e.g. {differing[:5]}"
        compared[table] = (len(duck), len(schema))
    # Not vacuous: each shape's own tables are full, and the features are more than keys.
    assert compared["stg_customers"][0] >= 250
    assert compared["customer_snapshots"][0] >= 250
    assert compared["customer_features"][1] >= 10
    if shape == "event_log":
        assert compared["stg_events"][0] > 10_000
        assert compared["churn_labels"][0] == compared["customer_snapshots"][0]


def test_spark_wrote_the_lake_and_the_inference_matches(homes):
    shape, root = homes
    lake = root / "spark" / "lake"
    assert list((lake / "stg_customers").glob("*.parquet"))
    assert any((lake / "customer_features").glob("observation_date=*"))
    decided = "flat_columns" if shape == "flat" else "event_feature_spec"
    assert _table(root / "duckdb", decided) == _table(root / "spark", decided)
