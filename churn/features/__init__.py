"""[features] Who is observed when, what they looked like then, and what happened next.

* :mod:`~churn.features.definition` — the declared features and the one point-in-time SQL that
  training and ``/score_events`` both run;
* :mod:`~churn.features.snapshots` — who is active at each observation date;
* :mod:`~churn.features.labels` — whether they churned within the horizon;
* :mod:`~churn.features.leakage` — the check that no feature saw the future;
* :mod:`~churn.features.events` — features generated from any event log's own vocabulary
  (:class:`~churn.features.events.EventFeatureSpec`, stored in the model card);
* :mod:`~churn.features.flat` — the same three for a flat customer table.

The declarations are re-exported here because almost every layer reads them.
"""

from churn.features.definition import (
    CATEGORICAL_FEATURES,
    FEATURE_NAMES,
    FEATURES,
    KEY_COLUMNS,
    LOOKBACK_DAYS,
    NUMERIC_FEATURES,
    Feature,
    FeatureKind,
    SourceTables,
    feature_sql,
)

__all__ = [
    "CATEGORICAL_FEATURES",
    "FEATURES",
    "FEATURE_NAMES",
    "KEY_COLUMNS",
    "LOOKBACK_DAYS",
    "NUMERIC_FEATURES",
    "Feature",
    "FeatureKind",
    "SourceTables",
    "feature_sql",
]
