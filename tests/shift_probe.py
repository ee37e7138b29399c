"""Land the shift tool's next month through the incoming path, the calendar one month longer.

    python -m tests.shift_probe KIND PCT OUT.json

Run in a fresh process whose ``CHURN_HOME`` (and ``BENTOML_HOME``) hold a copy of a materialized
home. It writes the month with :func:`churn.synthetic.shift.next_month` (``--region north``),
lands it as ``incoming_files_sensor``'s run does (raw -> staging, which adds the month that sees
the new data to the calendar in the instance, no restart), then runs what follows over the
grown calendar (features -> monitoring, as ``new_month_sensor`` would) and writes the
``drift_check`` result to OUT.json.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main(kind: str, pct: float, out: str) -> int:
    import dagster as dg

    from churn.settings import load_settings
    from churn.synthetic.shift import next_month
    from churn_assets.definitions import defs
    from churn_assets.defs.raw import sensors as raw_sensors
    from churn_assets.partitions import full_range_tags, sync_calendar
    from churn_assets.resources import ChurnHomeResource, EngineResource, WarehouseResource
    from tests.graph import staged_calendar

    home = Path(os.environ["CHURN_HOME"])
    files = next_month(home / "raw", home / "incoming", kind, region="north", pct=pct)
    settled = time.time() - raw_sensors.SETTLE_SECONDS - 5
    for path in files:
        os.utime(path, (settled, settled))
    instance = dg.DagsterInstance.ephemeral()
    sync_calendar(instance, *staged_calendar(home, load_settings()))
    resources = {
        "warehouse": WarehouseResource(path=str(home / "warehouse.duckdb")),
        "churn_home": ChurnHomeResource(home=str(home)),
        "engine": EngineResource(home=str(home)),
    }
    landing = dg.AssetSelection.groups("raw", "staging")
    dg.materialize(
        assets=list(defs.assets or []),
        selection=landing,
        resources=resources,
        instance=instance,
        run_config={"ops": {"raw_tables": {"config": {"incoming_files": [str(f) for f in files]}}}},
    )
    result = dg.materialize(
        assets=list(defs.assets or []),
        selection=raw_sensors.INCOMING_SELECTION - landing,
        resources=resources,
        instance=instance,
        tags=full_range_tags(instance),
    )
    check = next(e for e in result.get_asset_check_evaluations() if e.check_name == "drift_check")
    Path(out).write_text(
        json.dumps(
            {
                "passed": check.passed,
                "description": check.description,
                "metadata": {k: v.value for k, v in check.metadata.items()},
            },
            default=str,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], float(sys.argv[2]), sys.argv[3]))
