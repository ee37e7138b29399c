"""(c) A typical FastAPI churn service: a one-row pandas DataFrame and ``predict_proba`` per
request, then a second model call for the explanation.

This is the shape most churn services have (a sync endpoint in FastAPI's thread pool, the request
model turned into a DataFrame, the training-time frame encoding, ``predict_proba``, then SHAP-style
contributions for the reasons). Same model, same request validation (the service's pydantic
models as the body type), same answer fields as the Bento.

    python -m benchmarks.fastapi_app --port 3103
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI

from benchmarks.apps import load_champion, serve
from churn.modeling.spec import encode_frame
from churn.modeling.thresholds import assign_tiers

LOADED, SCHEMAS = load_champion()
MODEL = LOADED.model
CARD = LOADED.card
THRESHOLD = float(CARD["thresholds"]["default"])
CUTS = (float(CARD["risk_tiers"]["low_medium"]), float(CARD["risk_tiers"]["medium_high"]))
ScoreRequest = SCHEMAS.score_request

app = FastAPI(title="typical churn service")


@app.post("/score")
def score(request: ScoreRequest) -> dict[str, Any]:  # type: ignore[valid-type]
    record = request.features
    frame = pd.DataFrame([record])
    X = encode_frame(frame, MODEL.specs)
    probability = float(MODEL.predict_proba(X)[0])
    threshold = THRESHOLD if request.threshold is None else request.threshold
    return {
        "customer_id": request.customer_id,
        "churn_probability": probability,
        "churn_label": int(probability >= threshold),
        "threshold": threshold,
        "risk_tier": str(assign_tiers(np.array([probability]), CUTS)[0]),
        "reasons": MODEL.top_reasons(X, [record])[0],
        "model_version": LOADED.version,
        "feature_order": MODEL.feature_names,
    }


def main() -> None:
    serve(app, __doc__, default_port=3103)


if __name__ == "__main__":
    main()
