"""Whom to contact, and a control group: each customer's own value, the expected value of a
contact, the ranked list cut at capacity, and the seeded holdout.

The rule (issue 25, item 4), per observation date:

1. ``expected_value = churn_probability * success_rate * value - intervention_cost``, where
   ``value`` is the customer's own (:func:`customer_values`) or the configured number;
2. the candidates are the ``churn_label = 1`` rows (the high tier) whose expected value is
   positive, ranked by expected value (descending; ties by ``customer_id``);
3. the list is cut at ``capacity`` (a count, or a share of the month's scored customers;
   none: everyone);
4. of the ``n`` kept, exactly ``round(holdout_share * n)`` (Python's ``round``: half to even)
   are ``holdout`` (not contacted, the control group), chosen by the smallest seeded hash of
   (customer_id, observation_date): the same customers on every rerun, and independent of the
   score, so contacted and held-out customers are alike but for the contact; the rest are
   ``contact``.

Label and tier never change here: capacity and the holdout choose ``contact`` only.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

import numpy as np

from churn.features.events import DEFAULT_WINDOWS, measure_slugs
from churn.ingest.flat import feature_name

if TYPE_CHECKING:
    import pandas as pd

    from churn.modeling.training import Economics
    from churn.settings import Settings
    from churn.sources.config import SourceConfig

HOLDOUT_SEED = b"churn-holdout-v1"
"""The key of the holdout hash: changing it draws another control group for every month."""
DAYS_PER_MONTH = 365.25 / 12
FIVE_TABLE_MEASURES = {"amount": ("amount_paid_90d", 90)}
"""The five-table schema's measure and the feature (with its window in days) that holds it."""
MEASURE_KEY = "economics.retained_value.measure"


def source_economics(settings: Settings) -> Economics:
    """The economics of the configured source (its ``economics:`` block; the synthetic source
    and a config without the block get the defaults)."""
    from churn.modeling.training import Economics

    config = settings.source_config
    return Economics() if config is None else Economics(**config.economics.model_dump())


def value_feature(
    economics: Economics, config: SourceConfig | None, columns: Sequence[str] = ()
) -> tuple[str, float] | None:
    """The feature holding ``retained_value_measure`` and the factor that turns it into a
    monthly average, or ``None`` when every customer is worth the configured number.

    A flat table's column is taken as monthly already (e.g. ``MonthlyCharges``); an event
    log's measure is its sum over the longest window among the feature ``columns`` (default
    windows without them); the five-table ``amount`` is ``amount_paid_90d``. All are point in
    time: features see only data before the date."""
    measure = economics.retained_value_measure
    if measure is None:
        return None
    if config is not None and config.shape == "flat":
        return feature_name(measure), 1.0
    if config is not None and config.is_event_log:
        measures = config.tables["events"].measures if "events" in config.tables else ()
        if measure not in measures:
            raise ValueError(f"{MEASURE_KEY}: {measure!r} is not a measure of tables.events")
        slug = measure_slugs(measures)[measures.index(measure)]
        pattern = re.compile(rf"{re.escape(slug)}_sum_(\d+)d")
        windows = [int(m.group(1)) for c in columns if (m := pattern.fullmatch(c))]
        window = max(windows or DEFAULT_WINDOWS)
        return f"{slug}_sum_{window}d", DAYS_PER_MONTH / window
    if measure not in FIVE_TABLE_MEASURES:
        raise ValueError(f"{MEASURE_KEY}: {measure!r} is not a five-table measure (amount)")
    column, window = FIVE_TABLE_MEASURES[measure]
    return column, DAYS_PER_MONTH / window


def customer_values(
    features: pd.DataFrame, economics: Economics, config: SourceConfig | None
) -> np.ndarray:
    """Each customer's value: the monthly average of the measure times ``months``; the
    configured number where the customer has none (missing, or not positive)."""
    n = len(features)
    found = value_feature(economics, config, list(features.columns))
    if found is None:
        return np.full(n, economics.retained_value)
    column, factor = found
    if column not in features.columns:
        raise ValueError(
            f"{MEASURE_KEY}: {economics.retained_value_measure!r} has no feature {column!r} "
            "(a numeric column of the source is needed)"
        )
    import pandas as pd

    monthly = pd.to_numeric(features[column], errors="coerce").to_numpy(dtype=np.float64)
    values = monthly * factor * float(economics.retained_value_months or 1.0)
    has_value = np.isfinite(values) & (values > 0)
    return np.where(has_value, values, economics.retained_value)


def expected_values(
    probabilities: np.ndarray, values: np.ndarray, economics: Economics
) -> np.ndarray:
    """What contacting each customer is worth on average: p * success * value - cost."""
    return probabilities * economics.success_rate * values - economics.intervention_cost


def holdout_key(customer_id: object, observation_date: object) -> int:
    """The seeded hash that orders a month's selected customers for the holdout draw."""
    day = observation_date.isoformat() if isinstance(observation_date, date) else observation_date
    text = f"{customer_id}|{str(day)[:10]}".encode()
    return int.from_bytes(hashlib.blake2b(text, key=HOLDOUT_SEED, digest_size=8).digest(), "big")


def capacity_of(economics: Economics, scored: int) -> int | None:
    """Contacts allowed in a month of ``scored`` customers (``None``: no cap)."""
    if economics.capacity_count is not None:
        return int(economics.capacity_count)
    if economics.capacity_share is not None:
        return round(economics.capacity_share * scored)
    return None


def choose_contacts(scores: pd.DataFrame, economics: Economics) -> tuple[np.ndarray, np.ndarray]:
    """``(contact, holdout)`` boolean arrays for ``scores`` (``customer_id``,
    ``observation_date``, ``churn_label``, ``expected_value``), by the module's rule, each
    observation date on its own."""
    n = len(scores)
    contact = np.zeros(n, dtype=bool)
    holdout = np.zeros(n, dtype=bool)
    if n == 0:
        return contact, holdout
    labels = scores["churn_label"].to_numpy()
    ev = scores["expected_value"].to_numpy(dtype=np.float64)
    ids = scores["customer_id"].to_numpy()
    days = scores["observation_date"].to_numpy()
    for day in np.unique(days):
        month = np.flatnonzero(days == day)
        candidates = month[(labels[month] == 1) & (ev[month] > 0)]
        order = sorted(candidates, key=lambda i: (-ev[i], str(ids[i])))
        cap = capacity_of(economics, len(month))
        selected = np.asarray(order[:cap] if cap is not None else order, dtype=np.intp)
        held = round(economics.holdout_share * len(selected))
        day_value = _as_date(day)
        by_hash = sorted(selected, key=lambda i: holdout_key(ids[i], day_value))
        holdout[by_hash[:held]] = True
        contact[selected] = True
        contact[holdout] = False
    return contact, holdout


def _as_date(value: object) -> date:
    """A numpy or pandas date as a :class:`datetime.date` (the hash reads its ISO text)."""
    import pandas as pd

    return pd.Timestamp(value).date()


def economics_rows(economics: Economics) -> list[tuple[str, str, str]]:
    """The economics as (key, value, meaning) rows, for the UI's tables and reports: the
    numbers a retention team agreed to, in the words of the source config."""
    if economics.retained_value_measure is None:
        value = f"{economics.retained_value:g}"
        value_meaning = "what keeping a customer is worth (every customer)"
    else:
        value = (
            f"{economics.retained_value_months:g} months of {economics.retained_value_measure} "
            f"(default {economics.retained_value:g})"
        )
        value_meaning = "the customer's own average monthly measure times months"
    if economics.capacity_count is not None:
        capacity = f"{economics.capacity_count:,} per month"
    elif economics.capacity_share is not None:
        capacity = f"{economics.capacity_share:.4g} of the scored customers per month"
    else:
        capacity = "no cap"
    return [
        ("intervention_cost", f"{economics.intervention_cost:g}", "what one contact costs"),
        ("success_rate", f"{economics.success_rate:g}", "share of contacted churners kept"),
        ("retained_value", value, value_meaning),
        ("capacity", capacity, "contacts per month, best expected value first"),
        (
            "holdout_share",
            f"{economics.holdout_share:g}",
            "share of the selected customers held out as the control group",
        ),
    ]
