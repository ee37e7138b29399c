"""The code location: ``dagster dev`` and ``dagster asset materialize -m`` load ``defs``.

Importing this module must stay cheap: the multiprocess executor re-imports it in every step,
so heavy libraries (LightGBM, scikit-learn, BentoML, Evidently) are imported inside assets.
"""

from __future__ import annotations

import dagster as dg

from churn.settings import load_settings
from churn_assets.assets.features import (
    churn_labels,
    customer_features,
    customer_snapshots,
    training_set,
)
from churn_assets.assets.models import candidate_models, champion_model, model_evaluation
from churn_assets.assets.raw import raw_tables
from churn_assets.assets.staging import staging_assets
from churn_assets.resources import build_resources

settings = load_settings()

defs = dg.Definitions(
    assets=[
        raw_tables,
        *staging_assets,
        customer_snapshots,
        customer_features,
        churn_labels,
        training_set,
        candidate_models,
        model_evaluation,
        champion_model,
    ],
    resources=build_resources(settings),
)
