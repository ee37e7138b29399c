"""Realized model quality once labels mature, compared with what the model card promised.

Two sources of scored-and-labeled rows:

* ``logged``: prediction-log rows that carry an ``observation_date`` (``/score_events``) joined
  to ``churn_labels`` on (customer_id, observation_date): the scores the service really served.
* ``rescored``: the champion re-scores every matured snapshot after its test window, i.e. data
  it neither trained nor was selected on. Plain ``/score`` rows carry no date, so this is what
  measures a champion whose traffic cannot be joined to labels (and the batch population).

And, per month, the batch list itself: the rows ``customer_scores`` wrote, joined to the labels
once they mature (:func:`stored_scores_realized`), and the realized effect of contacting them:
churn among the contacted against the seeded held-out control group (:func:`realized_effect`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import duckdb
import numpy as np

from churn.modeling.calibration import ece_equal_count
from churn.modeling.metrics import auc, average_precision, brier, top_share_stats
from churn.warehouse import table_exists


@dataclass(frozen=True)
class Realized:
    source: str
    model_version: str
    rows: int
    positives: int
    roc_auc: float | None
    pr_auc: float | None
    brier: float | None
    mean_score: float
    observed_rate: float
    expected_roc_auc: float | None
    expected_pr_auc: float | None

    @property
    def auc_drop(self) -> float | None:
        if self.roc_auc is None or self.expected_roc_auc is None:
            return None
        return self.expected_roc_auc - self.roc_auc

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"auc_drop": self.auc_drop}


def realized(
    source: str, version: str, y: np.ndarray, scores: np.ndarray, card: dict | None
) -> Realized:
    """Metrics on matured rows; AUCs are None when only one class is present."""
    y, scores = np.asarray(y, int), np.asarray(scores, float)
    both = 0 < y.sum() < len(y)
    test = (card or {}).get("metrics", {}).get("test", {})
    return Realized(
        source=source,
        model_version=version,
        rows=len(y),
        positives=int(y.sum()),
        roc_auc=float(auc(y, scores)) if both else None,
        pr_auc=float(average_precision(y, scores)) if both else None,
        brier=float(brier(y, scores)) if len(y) else None,
        mean_score=float(scores.mean()) if len(y) else 0.0,
        observed_rate=float(y.mean()) if len(y) else 0.0,
        expected_roc_auc=test.get("roc_auc"),
        expected_pr_auc=test.get("pr_auc"),
    )


def logged_rows(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per model version: (labels, served scores) of logged rows whose label has matured."""
    if not table_exists(con, "prediction_logs"):
        return {}
    rows = con.execute(
        """
        SELECT p.model_version, CAST(l.churned AS INTEGER), p.churn_probability
        FROM prediction_logs p
        JOIN churn_labels l
          ON l.customer_id = p.customer_id AND l.observation_date = p.observation_date
        WHERE p.observation_date IS NOT NULL AND l.churned IS NOT NULL
        """
    ).fetchall()
    out: dict[str, list[tuple[int, float]]] = {}
    for version, label, score in rows:
        out.setdefault(version, []).append((label, score))
    return {
        v: (np.array([r[0] for r in pairs]), np.array([r[1] for r in pairs]))
        for v, pairs in out.items()
    }


def unseen_matured(con: duckdb.DuckDBPyConnection, after: str):
    """Matured training-set rows observed after ``after`` (the end of the card's test window)."""
    return con.execute(
        "SELECT * FROM training_set WHERE observation_date > CAST(? AS DATE) "
        "ORDER BY observation_date, customer_id",
        [after],
    ).df()


def last_seen_date(card: dict) -> str:
    """The newest observation date the model trained, validated or was tested on."""
    window = card.get("data_window", {})
    dates = [d for key in ("train_dates", "validation_dates", "test_dates") for d in window[key]]
    return max(dates)


@dataclass(frozen=True)
class StoredScoresMonth:
    """How one month of ``customer_scores`` did once its labels matured."""

    observation_date: str
    model_version: str
    rows: int
    """Scored rows whose label has matured (what the metrics are computed on)."""
    positives: int
    roc_auc: float | None
    top_decile_lift: float | None
    top_decile_capture: float | None
    contacted: int
    precision_at_threshold: float | None
    recall_at_threshold: float | None
    scored_rows: int = 0
    """Every row the model scored that month, labelled or not."""
    threshold: float | None = None
    """The decision threshold precision and recall are taken at (the scoring model's card);
    ``None``: the stored ``churn_label`` (the same threshold at scoring time) was used."""
    contact_share: float | None = None
    """Share of the month's scored rows with ``contact = true`` (``None``: no such column)."""
    holdout_share: float | None = None
    """Share of the month's scored rows held out as the control group."""
    ece: float | None = None
    """Realized calibration: expected calibration error over 10 equal-count bins
    (:func:`churn.modeling.calibration.ece_equal_count`), the card's ``test_ece`` as it lands."""

    @property
    def share_labelled(self) -> float | None:
        """Share of the month's scored rows whose label has matured: how final the month is."""
        return self.rows / self.scored_rows if self.scored_rows else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"share_labelled": self.share_labelled}


def stored_scores_realized(
    con: duckdb.DuckDBPyConnection, threshold_of: Callable[[str], float | None] | None = None
) -> list[StoredScoresMonth]:
    """Per observation date and model version: the written scores against matured labels.

    This is the batch list a retention team really received, so it answers "did the list
    work?" month by month: AUC, and how rich in churners its top decile was (lift) and how many
    of all churners it held (capture); also precision and recall at the model's decision
    threshold (``threshold_of``: model version -> its card's threshold; ``None`` for a version
    falls back to the stored ``churn_label``), and the share of the month's rows already
    labelled. Months without any matured label are left out.
    """
    if not table_exists(con, "customer_scores") or not table_exists(con, "churn_labels"):
        return []
    shares = (
        "avg(CAST(s.contact AS DOUBLE)), avg(CAST(s.holdout AS DOUBLE))"
        if _has_contact_columns(con)
        else "NULL, NULL"
    )
    rows = con.execute(
        f"""
        SELECT CAST(s.observation_date AS VARCHAR), s.model_version, count(*), {shares},
               list(CAST(l.churned AS INTEGER) ORDER BY s.customer_id)
                   FILTER (WHERE l.churned IS NOT NULL),
               list(s.churn_probability ORDER BY s.customer_id)
                   FILTER (WHERE l.churned IS NOT NULL),
               list(s.churn_label ORDER BY s.customer_id) FILTER (WHERE l.churned IS NOT NULL)
        FROM customer_scores s
        LEFT JOIN churn_labels l USING (customer_id, observation_date)
        GROUP BY ALL
        HAVING count(l.churned) > 0
        ORDER BY 1, 2
        """
    ).fetchall()
    months = []
    for (
        day,
        version,
        scored,
        contact_share,
        holdout_share,
        labels,
        probabilities,
        decisions,
    ) in rows:
        y = np.asarray(labels, dtype=np.int64)
        p = np.asarray(probabilities, dtype=np.float64)
        threshold = threshold_of(version) if threshold_of is not None else None
        contacted = p >= threshold if threshold is not None else np.asarray(decisions, bool)
        both = 0 < y.sum() < y.size
        lift, capture = top_share_stats(y, p, 0.1) if y.sum() else (None, None)
        hits = int(y[contacted].sum())
        months.append(
            StoredScoresMonth(
                observation_date=day,
                model_version=version,
                rows=int(y.size),
                positives=int(y.sum()),
                roc_auc=float(auc(y, p)) if both else None,
                top_decile_lift=None if lift is None else float(lift),
                top_decile_capture=None if capture is None else float(capture),
                contacted=int(contacted.sum()),
                precision_at_threshold=hits / int(contacted.sum()) if contacted.any() else None,
                recall_at_threshold=hits / int(y.sum()) if y.sum() else None,
                scored_rows=int(scored),
                threshold=threshold,
                contact_share=contact_share,
                holdout_share=holdout_share,
                ece=ece_equal_count(y, p) if y.size else None,
            )
        )
    return months


def window_of(observation_date: str, card: dict | None) -> str:
    """Which block of the model's own data window a date fell in (``train``, ``validation``,
    ``test``), or ``unseen`` when the model never saw it: only ``unseen`` months are an honest
    out-of-sample result, and a reader must be able to tell them apart."""
    window = (card or {}).get("data_window", {})
    for block in ("test", "validation", "train"):
        if observation_date[:10] in window.get(f"{block}_dates", []):
            return block
    return "unseen"


def _has_contact_columns(con: duckdb.DuckDBPyConnection) -> bool:
    """``customer_scores`` written before the contact rule has no ``contact``/``holdout``."""
    columns = {row[0] for row in con.execute("DESCRIBE customer_scores").fetchall()}
    return {"contact", "holdout"} <= columns


EFFECT_METHOD = "Newcombe hybrid score interval (Wilson score intervals of each rate)"
"""How the interval of the difference of two churn rates is computed (:func:`newcombe`)."""


def wilson(events: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``events / n`` (``n`` > 0): unlike the normal
    approximation it stays inside [0, 1] and is sensible at 0 or ``n`` events, which a small
    control group often has."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = events / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(
    events_a: int, n_a: int, events_b: int, n_b: int, confidence: float = 0.95
) -> tuple[float, float, float]:
    """``(difference, low, high)`` of ``p_a - p_b`` for two independent proportions, by
    Newcombe's hybrid score method (1998, method 10): each rate's Wilson interval, combined
    as ``d - sqrt((p_a - l_a)^2 + (u_b - p_b)^2)`` and ``d + sqrt((u_a - p_a)^2 +
    (p_b - l_b)^2)``. Good coverage at small counts, where the Wald interval is too narrow."""
    p_a, p_b = events_a / n_a, events_b / n_b
    l_a, u_a = wilson(events_a, n_a, confidence)
    l_b, u_b = wilson(events_b, n_b, confidence)
    d = p_a - p_b
    low = d - ((p_a - l_a) ** 2 + (u_b - p_b) ** 2) ** 0.5
    high = d + ((u_a - p_a) ** 2 + (p_b - l_b) ** 2) ** 0.5
    return d, low, high


@dataclass(frozen=True)
class RealizedEffect:
    """Churn among the contacted against the held-out control group, for one month whose
    labels matured (or ``all`` of them pooled).

    ``difference`` = contacted churn rate - held-out churn rate: negative when contacting
    kept customers. Both groups were chosen by the same rule and split by a hash that does
    not depend on the score, so the difference estimates the effect of the contact itself,
    not the model's accuracy."""

    observation_date: str
    contacted: int
    contacted_churned: int
    held_out: int
    held_out_churned: int
    contacted_churn_rate: float | None
    held_out_churn_rate: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float = 0.95
    method: str = EFFECT_METHOD

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def effect(
    day: str,
    contacted: int,
    contacted_churned: int,
    held_out: int,
    held_out_churned: int,
    confidence: float = 0.95,
) -> RealizedEffect:
    """One :class:`RealizedEffect`; rates and interval are ``None`` for an empty group."""
    rate_a = contacted_churned / contacted if contacted else None
    rate_b = held_out_churned / held_out if held_out else None
    d = low = high = None
    if contacted and held_out:
        d, low, high = newcombe(
            contacted_churned, contacted, held_out_churned, held_out, confidence
        )
    return RealizedEffect(
        observation_date=day,
        contacted=contacted,
        contacted_churned=contacted_churned,
        held_out=held_out,
        held_out_churned=held_out_churned,
        contacted_churn_rate=rate_a,
        held_out_churn_rate=rate_b,
        difference=d,
        ci_low=low,
        ci_high=high,
        confidence=confidence,
    )


def realized_effect(
    con: duckdb.DuckDBPyConnection, confidence: float = 0.95
) -> list[RealizedEffect]:
    """Per month of ``customer_scores`` whose labels matured: churn among the ``contact`` rows
    against the ``holdout`` rows, the difference and its interval (:func:`newcombe`); then
    ``all`` matured months pooled. Only rows with a matured label count. Empty without the
    tables or the columns."""
    if not table_exists(con, "customer_scores") or not table_exists(con, "churn_labels"):
        return []
    if not _has_contact_columns(con):
        return []
    rows = con.execute(
        """
        SELECT CAST(s.observation_date AS VARCHAR),
               count_if(s.contact), count_if(s.contact AND l.churned),
               count_if(s.holdout), count_if(s.holdout AND l.churned)
        FROM customer_scores s
        JOIN churn_labels l USING (customer_id, observation_date)
        WHERE l.churned IS NOT NULL
        GROUP BY ALL
        ORDER BY 1
        """
    ).fetchall()
    months = [effect(*(int(v) if i else v for i, v in enumerate(row)), confidence) for row in rows]
    if len(months) > 1:
        totals = [
            sum(getattr(m, key) for m in months)
            for key in ("contacted", "contacted_churned", "held_out", "held_out_churned")
        ]
        months.append(effect("all", *totals, confidence))
    return months
