"""``scoring_automation``: keeps the newest month of ``customer_scores`` fresh.

Declarative (``eager & all_deps_blocking_checks_passed``, see
:data:`churn_assets.defs.scoring.assets.SCORING_REFRESH`): a new champion (a retrain after
drift, a promoted challenger) or rebuilt features for the newest month (new files landed, the
monthly schedule) re-score that month and rewrite the export. Older months change only when
someone materializes them. Runs by default.
"""

from __future__ import annotations

import dagster as dg

SCORING = dg.AssetSelection.groups("scoring")

scoring_automation = dg.AutomationConditionSensorDefinition(
    "scoring_automation",
    target=SCORING,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Re-scores the newest month when a new champion lands or its features change.",
    # the newest-month condition is churn's own (a dynamic calendar has no latest time window):
    # custom conditions are evaluated in the code location
    use_user_code_server=True,
)
