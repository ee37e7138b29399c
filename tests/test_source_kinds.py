"""One object per source kind: the registry serves every config, every kind answers the whole
protocol, and a flat source stages only its own table while the graph downstream still runs."""

from __future__ import annotations

import inspect
from pathlib import Path

import duckdb
import pytest

from churn.sources.base import Source
from churn.sources.config import parse_source
from churn.sources.registry import KINDS, source_for
from tests.graph import materialize_graph

EVENT_TABLES = ("events", "payments", "tickets", "cancellations")


def _flat_source(folder: Path, rows: int = 80) -> Path:
    """A small flat table (id, label, two features) and its config, observed on 2025-06-01:
    inside the test session's synthetic calendar, so its one partition exists."""
    lines = ["account,plan,tenure,churned"]
    lines += [
        f"A{i:03d},{('basic', 'plus')[i % 2]},{i % 17},{'Yes' if i % 3 == 0 else 'No'}"
        for i in range(rows)
    ]
    (folder / "customers.csv").write_text("\n".join(lines) + "\n")
    config = folder / "source.yaml"
    config.write_text(
        "shape: flat\nname: tiny-flat\ntable: customers.csv\nid_column: account\n"
        "label: {column: churned, positive: 'Yes'}\nas_of: 2025-06-01\n"
    )
    return config


def _configs(folder: Path) -> dict[str, object]:
    """One config per kind, as the YAML parser returns it."""
    for name in ("c.csv", "e.csv", "p.csv", "t.csv", "x.csv"):
        (folder / name).write_text("id\n1\n")
    observation = {"start": "2024-04-01", "end": "2024-10-01"}
    event_log = {
        "shape": "events",
        "name": "log",
        "observation": observation,
        "churn": {"inactive_days": 30},
        "tables": {"events": {"path": "e.csv"}},
    }
    five_table = {
        "shape": "events",
        "name": "five",
        "observation": observation,
        "tables": {
            "customers": {"path": "c.csv"},
            "events": {"path": "e.csv"},
            "payments": {"path": "p.csv"},
            "tickets": {"path": "t.csv"},
            "cancellations": {"path": "x.csv"},
        },
    }
    return {
        "synthetic": None,
        "flat": parse_source(
            {
                "shape": "flat",
                "table": "c.csv",
                "id_column": "id",
                "label": {"column": "y", "positive": 1},
            },
            folder / "flat.yaml",
        ),
        "event_log": parse_source(event_log, folder / "log.yaml"),
        "five_table": parse_source(five_table, folder / "five.yaml"),
    }


def test_every_registered_kind_implements_the_whole_protocol():
    abstract = {
        name
        for name, member in inspect.getmembers(Source)
        if getattr(member, "__isabstractmethod__", False)
    }
    assert {"land", "stage", "snapshots_query", "labels_query", "leakage"} <= abstract
    assert len({kind.kind for kind in KINDS}) == len(KINDS), "kind names are unique"
    for kind in KINDS:
        assert not inspect.isabstract(kind), f"{kind.__name__} leaves {kind.__abstractmethods__}"
        assert kind.card_shape in ("flat", "events"), kind.__name__
        assert kind.tables, f"{kind.__name__} stages no table"


def test_each_config_is_served_by_exactly_its_kind(tmp_path: Path):
    configs = _configs(tmp_path)
    assert set(configs) == {kind.kind for kind in KINDS}, "add a config for every new kind"
    for name, config in configs.items():
        accepting = [kind.kind for kind in KINDS if kind.accepts(config)]
        assert name in accepting, f"{name}: accepted by {accepting}"
        assert source_for(config).kind == name


def test_only_the_flat_kind_lacks_the_event_tables(tmp_path: Path):
    from churn.ingest.schema import RAW_TABLES

    for name, config in _configs(tmp_path).items():
        source = source_for(config)
        missing = [t.name for t in RAW_TABLES if not source.has_table(t)]
        assert missing == (list(EVENT_TABLES) if name == "flat" else []), name
        if missing:
            assert source.absence_reason(RAW_TABLES[1]) == "a flat source has no events table"


@pytest.mark.slow
def test_a_flat_source_stages_only_its_table_and_the_graph_still_runs(tmp_path: Path):
    """After a synthetic load left event tables behind, a flat load drops them, creates none,
    says why in the event assets' metadata, evaluates no check on them, and the features and
    labels downstream are still materialized in the same run."""
    home = tmp_path / "home"
    home.mkdir()
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        for name in EVENT_TABLES:  # what an earlier source left behind
            for table in (f"raw_{name}", f"stg_{name}", f"stg_{name}_rejects"):
                con.execute(f"CREATE TABLE {table} AS SELECT 1 AS stale")
    config = _flat_source(tmp_path)
    selection = ",".join(
        [f"{layer}_{name}" for name in ("customers", *EVENT_TABLES) for layer in ("raw", "stg")]
        + [f"stg_{name}_rejects" for name in ("customers", *EVENT_TABLES)]
        + ["customer_snapshots", "customer_features", "churn_labels"]
    )
    run = materialize_graph(
        home,
        selection,
        first="2025-06-01",
        last="2025-06-01",
        run_config={"ops": {"raw_tables": {"config": {"source": str(config)}}}},
    )
    assert run.result.success
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        tables = {row[0] for row in con.execute("SHOW TABLES").fetchall()}
        labelled = con.execute("SELECT count(churned) FROM churn_labels").fetchone()[0]
    assert "stg_events" not in tables
    assert not {t for t in tables if any(name in t for name in EVENT_TABLES)}, tables
    assert {"stg_customers", "customer_snapshots", "customer_features"} <= tables
    assert labelled == 80
    materializations = [
        event.step_materialization_data.materialization
        for event in run.result.get_asset_materialization_events()
    ]
    notes = {
        m.asset_key.to_user_string(): m.metadata["note"].value
        for m in materializations
        if "note" in m.metadata
    }
    assert notes["stg_events"] == notes["raw_events"] == "a flat source has no events table"
    assert notes["stg_payments_rejects"] == "a flat source has no payments table"
    checks = run.checks()
    assert not [
        key for key in checks if key.split(":")[0] != "stg_customers" and key.startswith("stg_")
    ], "no check is evaluated on a table that is not there"
    assert checks["stg_customers:reject_share_below_limit"].passed
    assert checks["customer_features:rows_match_active_customers"].passed
