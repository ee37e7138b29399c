"""Land the shift tool's next month through the incoming path, the calendar one month longer.

    python -m tests.shift_probe KIND PCT OUT.json

Run in a fresh process whose ``CHURN_HOME`` (and ``BENTOML_HOME``) hold a copy of a materialized
home and whose ``CHURN_MONTHS`` is one higher than the copy's: the observation partitions are
fixed when the code location loads, so the month that sees the shifted data needs a new process
(docs/drift-walkthrough.md, step 2). It writes the month with :func:`churn.synthetic.shift.
next_month` (``--region north``), then materializes what ``incoming_files_sensor``'s run does
(raw -> staging -> features -> monitoring) and writes the ``drift_check`` result to OUT.json.
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
    from churn_assets.partitions import full_range_tags
    from churn_assets.resources import ChurnHomeResource, EngineResource, WarehouseResource

    home = Path(os.environ["CHURN_HOME"])
    files = next_month(home / "raw", home / "incoming", kind, region="north", pct=pct)
    settled = time.time() - raw_sensors.SETTLE_SECONDS - 5
    for path in files:
        os.utime(path, (settled, settled))
    result = dg.materialize(
        assets=list(defs.assets or []),
        selection=raw_sensors.INCOMING_SELECTION,
        resources={
            "warehouse": WarehouseResource(path=str(home / "warehouse.duckdb")),
            "churn_home": ChurnHomeResource(home=str(home)),
            "engine": EngineResource(home=str(home)),
        },
        instance=dg.DagsterInstance.ephemeral(),
        tags=full_range_tags(load_settings()),
        run_config={"ops": {"raw_tables": {"config": {"incoming_files": [str(f) for f in files]}}}},
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
