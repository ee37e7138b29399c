"""Champion vs challenger on the same customers, once their labels have matured.

In ``shadow`` and ``canary`` modes the scoring service logs both models' probabilities for every
row (``champion_probability`` / ``challenger_probability``, see
:mod:`churn.monitoring.prediction_log`).
Rows that carry an ``observation_date`` (``/score_events``) join ``churn_labels``; each such row
is a paired observation: the same customer, the same moment, two scores, one outcome.

The comparison is the difference in ROC AUC (challenger - champion) with a **paired bootstrap**
confidence interval: rows are resampled with replacement, both AUCs are recomputed on the same
resample, and the interval is the percentile range of the differences. Pairing matters: the two
models' AUCs are strongly correlated across resamples, so the interval of the *difference* is
much narrower than two separate intervals would suggest.

Promotion is recommended only when the whole interval lies above ``min_gain`` (default 0): the
challenger is better beyond the noise. An identical challenger gives a difference of exactly 0
in every resample, so it is never promoted; an equally good but different one straddles 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import duckdb
import numpy as np

DEFAULT_BOOTSTRAP = 1000
DEFAULT_CONFIDENCE = 0.95


def rank_auc(y: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC from average ranks (Mann-Whitney U); ties count one half."""
    from scipy.stats import rankdata

    y = np.asarray(y, dtype=bool)
    positives = int(y.sum())
    negatives = len(y) - positives
    ranks = rankdata(scores)
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def paired_bootstrap(
    y: np.ndarray,
    champion: np.ndarray,
    challenger: np.ndarray,
    *,
    n_boot: int = DEFAULT_BOOTSTRAP,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> tuple[float, float, float, float]:
    """(AUC difference on all rows, interval low, interval high, share of resamples where the
    challenger is better). Resamples with a single class are skipped."""
    y = np.asarray(y, dtype=np.int8)
    champion = np.asarray(champion, dtype=float)
    challenger = np.asarray(challenger, dtype=float)
    delta = rank_auc(y, challenger) - rank_auc(y, champion)
    rng = np.random.default_rng(seed)
    n = len(y)
    deltas = []
    for _ in range(n_boot):
        index = rng.integers(0, n, n)
        sample = y[index]
        positives = int(sample.sum())
        if positives == 0 or positives == n:
            continue
        deltas.append(rank_auc(sample, challenger[index]) - rank_auc(sample, champion[index]))
    if not deltas:
        return delta, float("nan"), float("nan"), float("nan")
    array = np.asarray(deltas)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(array, [tail, 100 - tail])
    return delta, float(low), float(high), float((array > 0).mean())


@dataclass(frozen=True)
class Comparison:
    source: str
    champion_version: str
    challenger_version: str
    rows: int
    positives: int
    confidence: float
    recommend_promotion: bool
    reason: str
    # The figures stay None when there are too few matured rows to compare on.
    champion_auc: float | None = None
    challenger_auc: float | None = None
    auc_delta: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    share_better: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(
    source: str,
    champion_version: str,
    challenger_version: str,
    y: np.ndarray,
    champion: np.ndarray,
    challenger: np.ndarray,
    *,
    min_rows: int = 100,
    min_gain: float = 0.0,
    n_boot: int = DEFAULT_BOOTSTRAP,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> Comparison:
    """Paired comparison and the promotion recommendation (see the module docstring)."""
    y = np.asarray(y, dtype=np.int8)
    rows, positives = len(y), int(y.sum())
    base = {
        "source": source,
        "champion_version": champion_version,
        "challenger_version": challenger_version,
        "rows": rows,
        "positives": positives,
        "confidence": confidence,
    }
    if rows < min_rows or positives == 0 or positives == rows:
        return Comparison(
            **base,
            recommend_promotion=False,
            reason=f"{rows} matured paired rows ({positives} churned): need {min_rows} "
            "with both outcomes",
        )
    delta, low, high, share = paired_bootstrap(
        y, champion, challenger, n_boot=n_boot, confidence=confidence, seed=seed
    )
    champion_auc, challenger_auc = rank_auc(y, champion), rank_auc(y, challenger)
    recommend = bool(np.isfinite(low) and low > min_gain)
    interval = f"{confidence:.0%} CI [{low:+.4f}, {high:+.4f}]"
    if recommend:
        reason = (
            f"challenger {challenger_version} beats champion {champion_version} on {rows} "
            f"matured rows: AUC {challenger_auc:.4f} vs {champion_auc:.4f} "
            f"(delta {delta:+.4f}, {interval} above {min_gain:+.4f}): promote"
        )
    else:
        reason = (
            f"challenger {challenger_version} not better beyond the noise on {rows} matured "
            f"rows: AUC {challenger_auc:.4f} vs {champion_auc:.4f} (delta {delta:+.4f}, "
            f"{interval} does not clear {min_gain:+.4f}): keep the champion"
        )
    return Comparison(
        **base,
        champion_auc=champion_auc,
        challenger_auc=challenger_auc,
        auc_delta=delta,
        ci_low=low,
        ci_high=high,
        share_better=share,
        recommend_promotion=recommend,
        reason=reason,
    )


def logged_pairs(
    con: duckdb.DuckDBPyConnection,
) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per (champion version, challenger version): labels and both logged probabilities of
    matured rows where both models scored the same request."""
    columns = {
        row[0]
        for row in con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'prediction_logs'"
        ).fetchall()
    }
    if not {"champion_probability", "challenger_probability"} <= columns:
        return {}
    rows = con.execute(
        """
        SELECT p.champion_version, p.challenger_version, CAST(l.churned AS INTEGER),
               p.champion_probability, p.challenger_probability
        FROM prediction_logs p
        JOIN churn_labels l
          ON l.customer_id = p.customer_id AND l.observation_date = p.observation_date
        WHERE p.observation_date IS NOT NULL AND l.churned IS NOT NULL
          AND p.champion_probability IS NOT NULL AND p.challenger_probability IS NOT NULL
        ORDER BY p.logged_at, p.request_id, p.customer_id
        """
    ).fetchall()
    grouped: dict[tuple[str, str], list[tuple[int, float, float]]] = {}
    for champion, challenger, label, p_champion, p_challenger in rows:
        grouped.setdefault((champion, challenger), []).append((label, p_champion, p_challenger))
    return {
        key: tuple(np.array(column) for column in zip(*values, strict=True))  # type: ignore[misc]
        for key, values in grouped.items()
    }


def decide_promotion(
    comparisons: list[Comparison], champion_version: str, challenger_version: str | None
) -> Comparison | None:
    """The comparison that speaks for the current pair: logged traffic first, then re-scored
    matured snapshots; None when there is no current challenger or no comparison of it."""
    if challenger_version is None:
        return None
    current = [
        c
        for c in comparisons
        if c.champion_version == champion_version and c.challenger_version == challenger_version
    ]
    judged = [c for c in current if c.auc_delta is not None]
    for source in ("logged", "rescored"):
        for comparison in judged:
            if comparison.source == source:
                return comparison
    return current[0] if current else None


def comparisons(
    con: duckdb.DuckDBPyConnection,
    champion: Any,
    challenger: Any | None,
    *,
    min_rows: int = 100,
    min_gain: float = 0.0,
    n_boot: int = DEFAULT_BOOTSTRAP,
) -> list[Comparison]:
    """Every paired comparison the warehouse allows (``champion``/``challenger`` are
    :class:`churn.registry.RegisteredModel`):

    * ``logged``: each (champion, challenger) pair seen in the prediction logs, on its matured
      rows — the realized results of live traffic (only ``/score_events`` rows carry the date
      that joins them to labels);
    * ``rescored``: both current models re-score the matured snapshots that *neither* trained,
      validated nor was tested on (after both cards' windows): a fallback while little logged
      traffic has matured.
    """
    from churn.modeling.spec import encode_frame
    from churn.monitoring.performance import last_seen_date, unseen_matured

    options = {"min_rows": min_rows, "min_gain": min_gain, "n_boot": n_boot}
    out = [
        compare("logged", champion_version, challenger_version, y, a, b, **options)
        for (champion_version, challenger_version), (y, a, b) in logged_pairs(con).items()
    ]
    if challenger is not None:
        after = max(last_seen_date(champion.card), last_seen_date(challenger.card))
        unseen = unseen_matured(con, after)
        if len(unseen):
            y = unseen["churned"].to_numpy()
            a = champion.model.predict_proba(encode_frame(unseen, champion.model.specs))
            b = challenger.model.predict_proba(encode_frame(unseen, challenger.model.specs))
            out.append(
                compare("rescored", champion.version, challenger.version, y, a, b, **options)
            )
    return out
