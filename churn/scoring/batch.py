"""Every customer of a feature table scored by the service's own :class:`Scorer`, in chunks.

The result is one row per customer and observation date, shaped for the people who use it:
a CRM imports flat columns, and a SQL user filters them without unnesting, so the top reasons
are three column triples (``reason_1_feature``, ``reason_1_value``, ``reason_1_contribution``,
...) rather than a list of structs. ``reason_k_value`` is text because a reason may be a
category or a number; numbers keep their shortest exact form (``234.0``, ``0.1``).

Speed: encoding is one vectorized pass over the frame (:func:`~churn.modeling.spec.
encode_frame`, the same codes as the service's ``encode_records``), the model call per chunk is
the service's vectorized path (TreeSHAP tables for LightGBM). Chunks bound memory: the tables
gather ``rows x trees x features-per-tree`` values, ~20 MB at 2,000 rows of a 200-tree model.
Larger chunks bought nothing: over 100k rows the TreeSHAP step took 1.0-2.0 CPU s at every
chunk size from 1,000 to 10,000 rows (measured on the default model, 194 trees), and the gather
of a 10,000-row chunk no longer fits in cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from churn.modeling.spec import encode_frame
from churn.modeling.survival import SURVIVAL_COLUMNS, score_columns
from churn.scoring.scorer import TOP_REASONS, Scorer

if TYPE_CHECKING:
    import pandas as pd

    from churn.modeling.training import Economics
    from churn.sources.config import SourceConfig

CHUNK_ROWS = 2_000

REASON_COLUMNS = [
    f"reason_{k}_{part}"
    for k in range(1, TOP_REASONS + 1)
    for part in ("feature", "value", "contribution", "text")
]
SCORE_COLUMNS = [
    "customer_id",
    "observation_date",
    "churn_probability",
    "churn_label",
    "threshold",
    "risk_tier",
    *REASON_COLUMNS,
    "retained_value",
    "expected_value",
    "contact",
    "holdout",
    *SURVIVAL_COLUMNS,
    "model_version",
]
COLUMN_DESCRIPTIONS = {
    "customer_id": "Customer scored.",
    "observation_date": "Observation date: the features saw only data strictly before it.",
    "churn_probability": "Probability of churning within the horizon (the champion's, 0-1).",
    "churn_label": "1 when churn_probability >= threshold: the customers worth contacting "
    "(exactly the high tier).",
    "threshold": "The model's decision threshold (expected value, chosen on validation).",
    "risk_tier": "high exactly when churn_label = 1 (probability >= threshold); medium and low "
    "split the rest at the card's cut point.",
    "retained_value": "What keeping the customer is worth: their own average monthly measure "
    "times months when the source config's economics take it from a measure (the configured "
    "number where they have none), else the configured number.",
    "expected_value": "Expected value of contacting the customer: churn_probability * "
    "success_rate * retained_value - intervention_cost (the source config's economics).",
    "contact": "True: contact this customer. The churn_label = 1 rows with a positive "
    "expected_value, ranked by it and cut at capacity, minus the holdout.",
    "holdout": "True: selected like a contact but held out (not contacted) as the control "
    "group: round(holdout_share * selected) per month, by a seeded hash of (customer_id, "
    "observation_date). contact and holdout are never both true.",
    "p_churn_30d": "Probability of churning within 30 days, from the survival curve "
    "(1 - S(1); equals churn_probability when the LightGBM classifier is the champion and the "
    "label horizon is 30 days). NULL without a survival model (a flat source).",
    "p_churn_90d": "Probability of churning within 90 days (1 - S(3)); never below "
    "p_churn_30d. NULL when the matured history is shorter than 3 months.",
    "p_churn_180d": "Probability of churning within 180 days (1 - S(6)); never below "
    "p_churn_90d. NULL when the matured history is shorter than 6 months.",
    "expected_lifetime_months": "Expected months the customer stays, the survival curve summed "
    "over at most 60 months (S(t) = (1 - h)^t, h the customer's monthly hazard, held constant).",
    "clv": "Customer value: sum over months t = 1..60 of S(t) * value per month * "
    "1.1^(-t/12); value per month = retained_value / its months (a year for the configured "
    "number).",
    "model_version": "Version of churn_model in the BentoML store that scored the row.",
    "risk_rank": "1 = the riskiest customer of the observation date.",
    "scored_at": "When the row was scored (UTC).",
}
for _k in range(1, TOP_REASONS + 1):
    COLUMN_DESCRIPTIONS |= {
        f"reason_{_k}_feature": f"Reason {_k}: the feature with the {_k}. largest contribution "
        "(either direction; for a high-risk customer only features that raise the risk).",
        f"reason_{_k}_value": f"Reason {_k}: the feature's value for this customer, as text.",
        f"reason_{_k}_contribution": f"Reason {_k}: its push on the log-odds of churn "
        "(positive: riskier).",
        f"reason_{_k}_text": f"Reason {_k} in plain language: the rounded value and how it "
        "compares with the customers the model was trained on.",
    }


def score_frame(
    scorer: Scorer,
    features: pd.DataFrame,
    economics: Economics,
    *,
    source: SourceConfig | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> pd.DataFrame:
    """Score every row of ``features`` (``customer_id``, ``observation_date`` and the model's
    features) at the model's decision threshold; one output row per input row, same order.

    ``economics`` (with the ``source`` whose measure gives each customer's value) set
    ``retained_value``, ``expected_value``, ``contact`` and ``holdout``
    (:mod:`churn.scoring.contact`); they never change the label or the tier."""
    import pandas as pd

    from churn.scoring.contact import choose_contacts, customer_values, expected_values

    X = encode_frame(features, scorer.specs)
    n = len(features)
    probabilities = np.empty(n)
    labels = np.empty(n, dtype=np.int64)
    tiers = np.empty(n, dtype=object)
    top = np.empty((n, TOP_REASONS), dtype=np.intp)
    pushes = np.empty((n, TOP_REASONS))
    texts = np.empty((n, TOP_REASONS), dtype=object)
    threshold = scorer.default_threshold
    for start in range(0, n, max(chunk_rows, 1)):
        chunk = slice(start, min(start + chunk_rows, n))
        explained = scorer.explain(X[chunk])
        probabilities[chunk] = explained.probabilities
        labels[chunk] = explained.labels
        tiers[chunk] = explained.tiers
        top[chunk] = explained.top_features
        pushes[chunk] = explained.top_contributions
        texts[chunk] = explained.top_texts
    columns: dict[str, object] = {
        "customer_id": features["customer_id"].to_numpy(),
        "observation_date": features["observation_date"].to_numpy(),
        "churn_probability": probabilities,
        "churn_label": labels,
        "threshold": np.full(n, threshold),
        "risk_tier": tiers,
    }
    names = np.asarray([*scorer.feature_order, None], dtype=object)  # index -1: no reason
    for k in range(TOP_REASONS):
        columns[f"reason_{k + 1}_feature"] = names[top[:, k]]
        columns[f"reason_{k + 1}_value"] = _values_as_text(features, scorer, top[:, k])
        columns[f"reason_{k + 1}_contribution"] = pushes[:, k]
        columns[f"reason_{k + 1}_text"] = texts[:, k]
    values = customer_values(features, economics, source)
    columns["retained_value"] = values
    columns["expected_value"] = expected_values(probabilities, values, economics)
    columns["contact"], columns["holdout"] = choose_contacts(pd.DataFrame(columns), economics)
    for name, column in score_columns(scorer.model, X, probabilities).items():
        columns[name] = pd.array(column, dtype="Float64")  # NaN -> NULL in the table
    columns["model_version"] = np.full(n, scorer.model_version, dtype=object)
    return pd.DataFrame(columns, columns=SCORE_COLUMNS)


def _values_as_text(features: pd.DataFrame, scorer: Scorer, feature_index: np.ndarray):
    """Each row's value of the feature ``feature_index`` names, as text (None when missing):
    one masked pass per feature that appears, not one lookup per row."""
    import pandas as pd

    values = np.full(len(features), None, dtype=object)
    for j in np.unique(feature_index[feature_index >= 0]):
        rows = feature_index == j
        column = features[scorer.feature_order[j]].to_numpy()[rows]
        spec = scorer.specs[j]
        if spec.kind == "numeric":
            numbers = np.asarray(column, dtype=np.float64)
            missing = np.isnan(numbers)
            if spec.dtype == "integer":  # 234, as the service echoes it, not 234.0
                numbers = np.where(missing, 0, numbers).astype(np.int64)
            text = numbers.astype(str).astype(object)
            text[missing] = None
        else:
            text = np.array([None if pd.isna(v) else str(v) for v in column], dtype=object)
        values[rows] = text
    return values
