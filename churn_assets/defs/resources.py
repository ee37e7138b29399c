"""What every group shares: the warehouse and state-folder resources, and the executor.

Every run executes its steps in one process (``in_process_executor``), whoever launches it (the
UI, the CLI, a sensor, ``make pipeline``): the steps write one DuckDB file and run one at a time
anyway (the warehouse pool), and the multiprocess executor's process start and code-location
import per step cost seconds each (docs/performance.md has the measured difference).
"""

import dagster as dg

from churn.settings import load_settings
from churn_assets.resources import build_resources


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources=build_resources(load_settings()), executor=dg.in_process_executor
    )
