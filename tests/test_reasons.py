"""Plain-language reasons (:mod:`churn.scoring.reasons`): phrases, rounding, percentiles."""

from __future__ import annotations

import numpy as np

from churn.features.events import EventFeatureSpec, features
from churn.modeling.spec import FeatureSpec
from churn.scoring.reasons import (
    ReasonWriter,
    feature_descriptions,
    format_number,
    phrase,
    readable,
    reference_distribution,
)
from churn.scoring.scorer import top_reasons


def _spec(name: str, description: str, dtype: str = "integer", **kw) -> FeatureSpec:
    kind = "categorical" if dtype == "string" else "numeric"
    return FeatureSpec(name, kind, dtype, description, **kw)  # type: ignore[arg-type]


def test_phrases_read_after_a_number() -> None:
    assert (
        phrase(_spec("logins_30d", "Logins in the last 30 days.")) == "logins in the last 30 days"
    )
    assert phrase(_spec("days_since_last_event", "Days since the last event, or ...")) == (
        "days since the last event"
    )
    assert phrase(_spec("x", "Sessions in the last 30 days (a session counted once).")) == (
        "sessions in the last 30 days"
    )
    assert phrase(_spec("events_7d", "Events in the 7 days before the observation date.")) == (
        "events in the last 7 days"
    )
    flat = _spec("monthly_charges", "Column 'Monthly_Charges' of the customer table: ...")
    assert phrase(flat) == "monthly charges"
    assert readable("total-spend.usd") == "total spend usd"


def test_generated_event_features_are_described_from_the_vocabulary() -> None:
    spec = EventFeatureSpec(event_types=("Billing: Card Declined", "login"), windows=(7, 30))
    specs = [
        _spec(f.name, f.description, "integer" if f.sql_type == "INTEGER" else "number")
        for f in features(spec)
    ]
    described = feature_descriptions(specs)
    assert described["type_billing_card_declined_30d"] == (
        "Billing: Card Declined events in the last 30 days"
    )
    assert described["days_since_last_event"] == "days since the last event"
    assert all(described.values())


def test_numbers_are_rounded_for_people() -> None:
    assert format_number(0.07861386138613861, False) == "0.079"
    assert format_number(3.0, True) == "3"
    assert format_number(2.345, False) == "2.3"
    assert format_number(1234.5, False) == "1,234"
    assert format_number(0.0, False) == "0"


def test_texts_compare_with_the_reference_customers() -> None:
    specs = [
        _spec("logins_30d", "Logins in the last 30 days."),
        _spec(
            "events_trend_7d_30d", "Smoothed ratio of the 7-day rate to the 30-day rate.", "number"
        ),
        _spec("plan", "Subscribed plan tier.", "string", categories=("basic", "pro")),
    ]
    rng = np.random.default_rng(0)
    X = np.column_stack(
        [np.arange(100.0), rng.uniform(0, 2, 100), np.r_[np.zeros(70), np.ones(30)]]
    )
    card = {"feature_descriptions": feature_descriptions(specs)} | {
        "reference": reference_distribution(specs, X)
    }
    writer = ReasonWriter(specs, card)
    texts = writer.texts(
        np.array([0, 0, 1, 2, -1]),
        np.array([3.0, 95.0, 0.0786, 1.0, 0.0]),
        np.array([0.4, -0.2, 0.1, 0.3, np.nan]),
    )
    assert texts[0] == "3 logins in the last 30 days (fewer than 96% of customers)"
    assert texts[1] == "95 logins in the last 30 days (more than 95% of customers); lowers the risk"
    assert texts[2].startswith("Smoothed ratio of the 7-day rate to the 30-day rate: 0.079 (lower")
    assert texts[3] == "Plan: pro (like 30% of customers)"
    assert texts[4] is None
    one = writer.texts(np.array([0]), np.array([1.0]), np.array([0.5]))[0]
    assert one.startswith("1 login in the last 30 days (")
    old_card = ReasonWriter(specs, {})  # a card from before reasons had text: no comparison
    assert old_card.texts(np.array([0]), np.array([3.0]), np.array([1.0]))[0] == (
        "3 logins in the last 30 days"
    )


def test_a_high_row_lists_only_risk_raising_reasons() -> None:
    contributions = np.array(
        [[-2.0, 0.5, 0.1, -0.3], [-2.0, 0.5, 0.1, -0.3], [-1.0, -0.5, -0.2, 0.0]]
    )
    top, pushes = top_reasons(contributions, np.array([False, True, True]))
    assert top[0].tolist() == [0, 1, 3]  # not high: strongest either way
    assert top[1].tolist() == [1, 2, -1]  # high: only what raises the risk
    assert np.isnan(pushes[1, 2])
    assert top[2, 0] == 3 and (top[2, 1:] == -1).all()  # always one reason
