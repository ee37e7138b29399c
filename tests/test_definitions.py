"""The code location's shape, pinned: asset keys, groups, checks (and which block), automation.

Runs without materializing anything, so an accidental change to the graph (a renamed asset, a
check that stopped blocking, a sensor that vanished) shows up in review as a diff of
``tests/definitions_snapshot.json``. After an intended change, regenerate it with::

    UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest tests/test_definitions.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import dagster as dg

from churn_assets.definitions import defs

SNAPSHOT = Path(__file__).with_name("definitions_snapshot.json")


def _partitions(partitions: dg.PartitionsDefinition | None) -> str | None:
    """The partitions' kind and name (a change of mechanism is a reviewed change)."""
    if partitions is None:
        return None
    name = getattr(partitions, "name", None)
    return f"{type(partitions).__name__}({name})" if name else type(partitions).__name__


def describe(definitions: dg.Definitions) -> dict[str, Any]:
    """What a reviewer should see change: the graph's keys, groups, checks and automation."""
    graph = definitions.resolve_asset_graph()
    assets = {
        key.to_user_string(): {
            "group": graph.get(key).group_name,
            "partitions": _partitions(graph.get(key).partitions_def),
            "deps": sorted(dep.to_user_string() for dep in graph.get(key).parent_keys),
        }
        for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string())
    }
    checks = {
        f"{spec.asset_key.to_user_string()}:{spec.name}": {"blocking": spec.blocking}
        for assets_def in graph.assets_defs
        for spec in assets_def.check_specs
    }
    return {
        "assets": assets,
        "checks": dict(sorted(checks.items())),
        "sensors": sorted(sensor.name for sensor in definitions.sensors or []),
        "schedules": sorted(schedule.name for schedule in definitions.schedules or []),
        "jobs": sorted(job.name for job in definitions.jobs or []),
        "resources": sorted((definitions.resources or {}).keys()),
    }


def test_definitions_match_the_snapshot() -> None:
    current = describe(defs)
    if os.environ.get("UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(current, indent=2) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    assert current == expected, (
        "the definitions changed; if intended, regenerate the snapshot (see this module's "
        "docstring) and review the diff"
    )


def test_the_gating_checks_block() -> None:
    """The checks whose failure must stop downstream work are blocking, whatever else changes."""
    checks = describe(defs)["checks"]
    for name in (
        "customer_features:no_future_leakage",
        "customer_features:rows_match_active_customers",
        "model_evaluation:quality_gate",
        "stg_events:reject_share_below_limit",
    ):
        assert checks[name]["blocking"], name
    assert not checks["drift_report:drift_check"]["blocking"]  # drift alerts, never blocks
