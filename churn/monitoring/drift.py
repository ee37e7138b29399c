"""Feature drift between the champion's training reference and new data, with Evidently.

Why these tests. Evidently's defaults pick a p-value test (KS, chi-square) below 1,000 reference
rows and a distance above, so the same data flips verdicts with the sample size. Neither family
alone is right at every size: a p-value test at thousands of rows flags differences too small to
matter (and Evidently's chi-square treats the reference frequencies as exact, so it over-alerts on
small samples), while a distance with a fixed threshold is pure noise at a few hundred rows
(Wasserstein >= 0.1 flagged ~50% of unchanged columns at 200 vs 200 rows in our measurement).

So a column drifts only when the change is both *material* and *significant*:

* numeric (``churn_wasserstein_ks``): Wasserstein distance normed by the reference standard
  deviation >= 0.1, and the two-sample Kolmogorov-Smirnov p-value < 0.01;
* categorical (``churn_jensenshannon_chi2``): Jensen-Shannon distance of the category
  frequencies >= 0.1, and the chi-square test of the 2 x k contingency table (both samples
  noisy) p-value < 0.01.

The p-value caps false alarms near 1% of columns at small sizes; the distance floor drives them
to 0 at large sizes. The reported score is the distance when significant and 0 otherwise, so
"score >= threshold" is the verdict everywhere (Evidently's HTML, our JSON, the check).
``tests/test_drift.py`` measures the false-alarm rate on the warehouse's own features.

Which columns, and of which kind, come from the champion's card (``feature_schema``), never from
the synthetic source's declarations: a flat table's ``contract`` column must not be the only one
compared because it shares a name with a synthetic feature, and its 0/1 ``senior_citizen`` flag is
categorical because staging said so, whatever dtype the Parquet reference happens to hold. A card
feature missing from either frame is reported as not compared instead of silently dropped.

Two comparisons, one rule. The newest snapshot is compared with the champion's training
sample (what the model learned) and with the previous observation date's rows of
``customer_features`` (what the data looked like a month ago). Either alone misleads: against the
training sample, a source's first months differ from its later ones for reasons that are no news
(a young event log's 90-day windows fill up, its customers age), so its own test months "drift"
on the first run; against the previous month alone, a slow move away from what the model learned
never shows. So ``drift_check`` (:func:`decide`) fails only when **both** shares exceed the limit:
the data changed this month *and* it is now unlike what the model was trained on. A sudden change
back towards the training data (an outage ending) is no alarm; a gradual drift is left to
retraining on newly matured labels and to realized quality (``model_performance``). Without a
previous month (a single snapshot, or one too small to compare) the training comparison decides
alone. ``decide_on`` can choose one comparison instead (``training`` or ``previous_month``).

Features that grow with time by construction (``time_growing`` in the feature definitions, the
card's ``time_growing_features``: tenure, days since signup) are never an alarm because customers
aged:

* against the previous month, the elapsed days between the two observation dates are known, so
  such a feature drifts only when it differs both as it is (a population that renews itself
  keeps its tenure distribution) *and* after adding the elapsed days to the previous month's
  values (the same customers, a month older): ageing alone explains neither verdict away;
* against the training sample, whose rows mix several observation dates and do not record which,
  no single elapsed time ages it: such features are reported (score and verdict) but not counted
  in the share.

Evidently is imported inside the functions: its import is slow (seconds) and the code location
(and every Dagster step) imports this module.

Cost. Evidently's drift preset computes each column's test three times (its per-column
``ValueDrift`` values, the dataset-drift counter, the HTML's drift table) and renders a Plotly
figure set for every ``ValueDrift`` value that the preset's own HTML never shows: about a third
of the report's CPU (docs/performance.md, "Pipeline"). Evidently offers no switch for it, and we
do not patch its classes, so that cost stays. Frames above :data:`MAX_ROWS` rows are sampled to it
with a fixed seed (:data:`SAMPLE_SEED`) before comparing: the tests' verdicts do not need more
rows than that, and the report's cost grows with them; the default data (a few thousand rows per
month) is never sampled.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from churn.features.definition import FEATURES

if TYPE_CHECKING:
    import pandas as pd

NUMERIC_METHOD = "churn_wasserstein_ks"
CATEGORICAL_METHOD = "churn_jensenshannon_chi2"
NUMERIC_THRESHOLD = 0.1
CATEGORICAL_THRESHOLD = 0.1
SIGNIFICANCE = 0.01
DEFAULT_DRIFT_SHARE = 0.2
"""Share of drifted features above which ``drift_check`` fails; also handed to Evidently, so its
report's dataset-drift header states the same limit (Evidently's own default is 0.5)."""

MAX_ROWS = 50_000
"""Rows above which a reference or current frame is sampled (with :data:`SAMPLE_SEED`) before
comparing; the JSON records the rows each frame had."""
SAMPLE_SEED = 20_240_601
"""Fixed, so the same two frames always give the same sample and the same verdicts."""

FeatureKinds = Mapping[str, str]
"""Feature name -> ``numeric`` or ``categorical``, in the model's feature order."""


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: str
    method: str
    threshold: float
    score: float
    drifted: bool
    time_growing: bool = False
    """Grows with the observation date by construction (the card's ``time_growing_features``)."""
    aged_score: float | None = None
    """For a time-growing column compared across a known elapsed time: the score against the
    reference aged by that time (``None`` otherwise)."""
    counted: bool = True
    """Whether the verdict counts towards the share: a time-growing column compared with a
    reference of unknown age is reported only."""


@dataclass(frozen=True)
class DriftResult:
    """The per-column verdicts and the share the ``drift_check`` compares with its threshold."""

    columns: list[ColumnDrift]
    reference_rows: int
    current_rows: int
    not_compared: list[str] = field(default_factory=list)
    """Model features missing from the reference or the current frame."""

    @property
    def counted_columns(self) -> list[ColumnDrift]:
        """The verdicts the share is computed over (every column but uncounted time-growing
        ones)."""
        return [c for c in self.columns if c.counted]

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.counted_columns if c.drifted]

    @property
    def share(self) -> float:
        counted = self.counted_columns
        return len(self.drifted_columns) / len(counted) if counted else 0.0

    @property
    def time_growing_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.time_growing]

    def summary(self) -> str:
        """``drifted/counted features drifted (share)``, naming the time-growing ones left out."""
        counted = self.counted_columns
        text = f"{len(self.drifted_columns)}/{len(counted)} features drifted ({self.share:.0%})"
        left_out = [c.column for c in self.columns if not c.counted]
        return f"{text}; not counted (time-growing): {', '.join(left_out)}" if left_out else text

    def to_dict(self) -> dict[str, Any]:
        return {
            "share": self.share,
            "drifted_columns": self.drifted_columns,
            "time_growing_columns": self.time_growing_columns,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "not_compared": self.not_compared,
            "columns": [asdict(c) for c in self.columns],
        }


def _significant_wasserstein(reference, current, feature_type, threshold) -> tuple[float, bool]:
    """Normed Wasserstein distance, kept only when KS says the samples differ (else 0)."""
    import numpy as np
    from scipy import stats

    ref, cur = np.asarray(reference, float), np.asarray(current, float)
    if len(ref) == 0 or len(cur) == 0:
        return 0.0, False
    distance = stats.wasserstein_distance(ref, cur) / max(float(np.std(ref)), 0.001)
    p_value = stats.ks_2samp(ref, cur, method="asymp").pvalue
    score = float(distance) if p_value < SIGNIFICANCE else 0.0
    return score, score >= threshold


def _significant_jensenshannon(reference, current, feature_type, threshold) -> tuple[float, bool]:
    """Jensen-Shannon distance of category shares, kept only when chi-square on the 2 x k table
    of both samples says they differ (else 0)."""
    import numpy as np
    import pandas as pd
    from scipy import stats
    from scipy.spatial import distance

    counts = pd.concat(
        [pd.Series(reference).value_counts(), pd.Series(current).value_counts()], axis=1
    ).fillna(0)
    table = counts.to_numpy(float).T
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, False
    shares = table / table.sum(axis=1, keepdims=True)
    js = float(distance.jensenshannon(shares[0], shares[1], base=2))
    p_value = stats.chi2_contingency(table, correction=False).pvalue
    score = js if p_value < SIGNIFICANCE and np.isfinite(js) else 0.0
    return score, score >= threshold


_REGISTERED = False


def register_stattests() -> None:
    """Make the two tests known to Evidently by name (once per process, lazily)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
    from evidently.legacy.core import ColumnType

    register_stattest(
        StatTest(
            name=NUMERIC_METHOD,
            display_name=f"Wasserstein normed, if KS p < {SIGNIFICANCE}",
            allowed_feature_types=[ColumnType.Numerical],
            default_threshold=NUMERIC_THRESHOLD,
        ),
        _significant_wasserstein,
    )
    register_stattest(
        StatTest(
            name=CATEGORICAL_METHOD,
            display_name=f"Jensen-Shannon, if chi-square p < {SIGNIFICANCE}",
            allowed_feature_types=[ColumnType.Categorical],
            default_threshold=CATEGORICAL_THRESHOLD,
        ),
        _significant_jensenshannon,
    )
    _REGISTERED = True


def kinds_from_card(card: Mapping[str, Any]) -> dict[str, str]:
    """The model's features and kinds, in its feature order, from its card's ``feature_schema``
    (what the model was trained on: synthetic, flat or generated event features alike)."""
    return {spec["name"]: spec["kind"] for spec in card["feature_schema"]}


KNOWN_TIME_GROWING: frozenset[str] = frozenset(f.name for f in FEATURES if f.time_growing)
"""The declared time-growing features, for cards written before ``time_growing_features``
(the generated event family's ``tenure_days`` shares its name with the synthetic one)."""


def time_growing_from_card(card: Mapping[str, Any]) -> list[str]:
    """The model's time-growing features: the card's list, or for older cards its features
    that the definitions flag."""
    if "time_growing_features" in card:
        return list(card["time_growing_features"])
    return [name for name in card["feature_order"] if name in KNOWN_TIME_GROWING]


def method_for(kind: str) -> tuple[str, float]:
    """The (Evidently stattest name, threshold) used for a feature of ``kind``."""
    if kind == "categorical":
        return CATEGORICAL_METHOD, CATEGORICAL_THRESHOLD
    return NUMERIC_METHOD, NUMERIC_THRESHOLD


def compared_columns(
    kinds: FeatureKinds, reference: pd.DataFrame, current: pd.DataFrame
) -> tuple[list[str], list[str]]:
    """(features present in both frames, features missing from either), in the model's order."""
    present = [c for c in kinds if c in reference.columns and c in current.columns]
    return present, [c for c in kinds if c not in present]


def _prepared(frame: pd.DataFrame, columns: Sequence[str], kinds: FeatureKinds) -> pd.DataFrame:
    """Categoricals as strings and numerics as floats: the types the DataDefinition declares."""
    out = frame[list(columns)].copy()
    for column in columns:
        if kinds[column] == "categorical":
            out[column] = out[column].astype("string").astype(object)
        else:
            out[column] = out[column].astype(float)
    return out


def _with_ageing(
    results: list[ColumnDrift],
    reference: pd.DataFrame,
    current: pd.DataFrame,
    time_growing: Collection[str],
    elapsed_days: int | None,
) -> list[ColumnDrift]:
    """Apply the time-growing rule (module docstring) to the raw verdicts."""
    out = []
    for result in results:
        if result.column not in time_growing:
            out.append(result)
        elif elapsed_days is None or result.kind != "numeric":
            out.append(replace(result, time_growing=True, counted=False))
        else:
            aged = reference[result.column].astype(float).dropna() + elapsed_days
            score, drifted = _significant_wasserstein(
                aged, current[result.column].astype(float).dropna(), None, result.threshold
            )
            out.append(
                replace(
                    result,
                    time_growing=True,
                    aged_score=score,
                    drifted=result.drifted and drifted,  # ageing alone, or none, explains it
                )
            )
    return out


def column_scores(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    kinds: FeatureKinds,
    *,
    time_growing: Collection[str] = (),
    elapsed_days: int | None = None,
) -> DriftResult:
    """The same registered Evidently stattests the report runs, without building a report.

    Fast enough to repeat hundreds of times in the false-alarm test. ``time_growing`` and
    ``elapsed_days`` (days from the reference's observation date to the current one, ``None``
    when the reference mixes dates) apply the time-growing rule of the module docstring.
    """
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    register_stattests()

    columns, missing = compared_columns(kinds, reference, current)
    ref, cur = _prepared(reference, columns, kinds), _prepared(current, columns, kinds)
    results = []
    for column in columns:
        method, threshold = method_for(kinds[column])
        kind = ColumnType.Categorical if kinds[column] == "categorical" else ColumnType.Numerical
        test = get_stattest(ref[column], cur[column], kind, method)
        outcome = test(ref[column].dropna(), cur[column].dropna(), kind, threshold)
        results.append(
            ColumnDrift(
                column,
                kinds[column],
                method,
                threshold,
                float(outcome.drift_score),
                bool(outcome.drifted),
            )
        )
    results = _with_ageing(results, reference, current, time_growing, elapsed_days)
    return DriftResult(results, len(reference), len(current), missing)


def sampled(frame: pd.DataFrame, max_rows: int = MAX_ROWS) -> pd.DataFrame:
    """``frame`` itself up to ``max_rows`` rows, else a sample of ``max_rows`` rows drawn with
    :data:`SAMPLE_SEED` (the same frame always gives the same sample)."""
    if len(frame) <= max_rows:
        return frame
    return frame.sample(n=max_rows, random_state=SAMPLE_SEED)


def run_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    kinds: FeatureKinds,
    *,
    drift_share: float = DEFAULT_DRIFT_SHARE,
    time_growing: Collection[str] = (),
    elapsed_days: int | None = None,
    max_rows: int = MAX_ROWS,
) -> tuple[DriftResult, Any]:
    """Run Evidently's drift preset with explicit types and per-column methods.

    Returns the verdicts (read back from the report's own values) and the Evidently snapshot,
    whose HTML is what a person opens from the Dagster UI. ``drift_share`` is the dataset-level
    limit the report shows; pass the one ``drift_check`` applies. The HTML shows the raw
    comparison of every column; the time-growing rule (``time_growing``, ``elapsed_days``: see
    :func:`column_scores`) is applied to the returned verdicts. Frames over ``max_rows`` rows are
    sampled (:func:`sampled`); the result records their full sizes.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    register_stattests()
    columns, missing = compared_columns(kinds, reference, current)
    numeric = [c for c in columns if kinds[c] == "numeric"]
    categorical = [c for c in columns if kinds[c] == "categorical"]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    methods = {c: method_for(kinds[c]) for c in columns}
    report = Report(
        [
            DataDriftPreset(
                columns=columns,
                per_column_method={c: m for c, (m, _) in methods.items()},
                per_column_threshold={c: t for c, (_, t) in methods.items()},
                drift_share=drift_share,
            )
        ]
    )
    rows = len(reference), len(current)
    reference, current = sampled(reference, max_rows), sampled(current, max_rows)
    snapshot = report.run(
        Dataset.from_pandas(_prepared(current, columns, kinds), data_definition=definition),
        Dataset.from_pandas(_prepared(reference, columns, kinds), data_definition=definition),
    )
    scores = _scores_from_snapshot(snapshot.dict())
    results = [
        ColumnDrift(
            column=c,
            kind=kinds[c],
            method=methods[c][0],
            threshold=methods[c][1],
            score=scores[c],
            drifted=scores[c] >= methods[c][1],  # a significant distance: higher = more drift
        )
        for c in columns
    ]
    results = _with_ageing(results, reference, current, time_growing, elapsed_days)
    return DriftResult(results, *rows, missing), snapshot


def _scores_from_snapshot(payload: dict[str, Any]) -> dict[str, float]:
    scores: dict[str, float] = {}
    for metric in payload.get("metrics", []):
        config = metric.get("config", {})
        if config.get("type", "").endswith(":ValueDrift"):
            scores[config["column"]] = float(metric["value"])
    return scores


def save_report(snapshot: Any, result: DriftResult, folder: Path, stem: str) -> tuple[Path, Path]:
    """Write ``<stem>.html`` (Evidently) and ``<stem>.json`` (our verdicts + Evidently's dict)."""
    folder.mkdir(parents=True, exist_ok=True)
    html, payload = folder / f"{stem}.html", folder / f"{stem}.json"
    snapshot.save_html(str(html))
    payload.write_text(
        json.dumps({"drift": result.to_dict(), "evidently": snapshot.dict()}, indent=2, default=str)
    )
    return html, payload


DECIDE_ON = ("both", "training", "previous_month")
"""What ``drift_check`` decides on (module docstring): both comparisons (the default), or one."""


@dataclass(frozen=True)
class DriftVerdict:
    passed: bool
    reason: str


def decide(
    training: DriftResult,
    previous: DriftResult | None,
    limit: float,
    decide_on: str = "both",
) -> DriftVerdict:
    """``drift_check``'s verdict from the two comparisons (``previous``: ``None`` when there is no
    previous month to compare with), by the rule in the module docstring."""
    if decide_on not in DECIDE_ON:
        raise ValueError(f"decide_on must be one of {', '.join(DECIDE_ON)}, not {decide_on!r}")
    train_over = training.share > limit
    train_text = f"against the training sample {training.summary()}"
    if previous is None:
        if decide_on == "previous_month":
            return DriftVerdict(True, f"no previous month to compare with; {train_text}")
        return DriftVerdict(not train_over, f"{train_text}; no previous month to compare with")
    previous_over = previous.share > limit
    previous_text = f"against the previous month {previous.summary()}"
    text = f"{previous_text}; {train_text}"
    if decide_on == "training":
        return DriftVerdict(not train_over, f"{train_text}; {previous_text}")
    if decide_on == "previous_month":
        return DriftVerdict(not previous_over, text)
    if train_over and not previous_over:
        text += " (within the limit against last month: no alarm)"
    elif previous_over and not train_over:
        text += " (a change this month, but within the limit against training: no alarm)"
    return DriftVerdict(not (train_over and previous_over), text)
