"""The code location: ``dagster dev`` and ``dagster asset materialize -m`` load ``defs``.

Assets and checks are collected from one module per stage, so the folder reads like the graph
and a new stage is one new module. Importing this must stay cheap: every run worker imports it,
so heavy libraries are imported inside the assets that use them.

Every run executes its steps in one process (``in_process_executor``), whoever launches it (the
UI, the CLI, a sensor, ``make pipeline``): the steps write one DuckDB file and run one at a time
anyway (the warehouse pool), and the multiprocess executor's process start and code-location
import per step cost seconds each (docs/performance.md has the measured difference).
"""

import dagster as dg

from churn.settings import load_settings
from churn_assets import automation
from churn_assets.assets import bento, eda, features, models, monitoring, raw, staging
from churn_assets.resources import build_resources

STAGES = [raw, staging, features, eda, models, bento, monitoring]

defs = dg.Definitions(
    assets=dg.load_assets_from_modules(STAGES),
    asset_checks=dg.load_asset_checks_from_modules(STAGES),
    sensors=automation.SENSORS,
    schedules=automation.SCHEDULES,
    jobs=automation.JOBS,
    resources=build_resources(load_settings()),
    executor=dg.in_process_executor,
)
