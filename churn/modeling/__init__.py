"""Churn models: one numeric encoding, two candidates, time-aware splits and the report.

Importing this package is cheap and never pulls in LightGBM, scikit-learn or matplotlib (those
load inside the functions that need them), nor Dagster or BentoML: the orchestrator imports it
at definition time and the serving container ships it alone.
"""

from churn.modeling.candidates import (
    LightGBMConfig,
    LogisticConfig,
    train_lightgbm,
    train_logistic,
)
from churn.modeling.metrics import auc, calibration_table, evaluate
from churn.modeling.model import ChurnModel, LightGBMChurnModel, LogisticChurnModel
from churn.modeling.spec import (
    FeatureSpec,
    build_feature_specs,
    encode_frame,
    encode_records,
    validation_errors,
)
from churn.modeling.split import IndexSplit, TimeSplit, stratified_split, time_split
from churn.modeling.thresholds import (
    assign_tier,
    assign_tiers,
    expected_value_threshold,
    risk_tiers,
)

__all__ = [
    "ChurnModel",
    "FeatureSpec",
    "IndexSplit",
    "LightGBMChurnModel",
    "LightGBMConfig",
    "LogisticChurnModel",
    "LogisticConfig",
    "TimeSplit",
    "assign_tier",
    "assign_tiers",
    "auc",
    "build_feature_specs",
    "calibration_table",
    "encode_frame",
    "encode_records",
    "evaluate",
    "expected_value_threshold",
    "risk_tiers",
    "stratified_split",
    "time_split",
    "train_lightgbm",
    "train_logistic",
    "validation_errors",
]
