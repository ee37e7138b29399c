"""Request and response models built from the packaged model's card.

The feature schema is not written by hand: it is generated from ``card["feature_schema"]`` (the
specs the model was trained with), so validation and the OpenAPI document at ``/docs.json`` match
the packaged model exactly. Every model forbids unknown keys, so a misspelled feature is refused
instead of silently scored as missing.

Choices, each deliberate:

* Categorical features are ``Literal`` of the categories seen in training. ``encode_records``
  would map an unknown category to "missing", but on ``/score`` the caller sends model inputs
  directly, and an unknown value there is far more often a typo than a new plan.
* Numeric features are strict: integers must be JSON integers, numbers JSON numbers (no strings,
  no booleans), finite, and inside the spec's validation bounds.
* The raw tables of ``/score_events`` follow the raw-table contract (``churn.ingest.schema``),
  the same
  rules staging enforces, so a history the warehouse would reject is refused here too.
* Every date and time (``as_of`` and the history's) lies in :data:`EARLIEST`..:data:`LATEST`.
  Python's calendar ends at years 1 and 9999, so ``9999-12-31T23:00:00-05:00`` overflowed when
  converted to UTC (a 500); years far from both ends keep every conversion and date difference
  the feature SQL makes inside the calendar, and no real customer history is near them.
* A model with generated event features (an event log: card key ``event_features``) takes
  ``{"customer": {customer_id, signup_date?, <its profile columns>}, "events": [{event_time,
  event_type?, session_id?, <its measures>...}], "as_of"}``: the columns come from the card.
  ``event_type`` is free text (a type outside the model's vocabulary counts as ``other``, as in
  training); a categorical profile value must be one the model saw, as on ``/score``. These rows
  are TypedDicts: their keys are the user's column names, which need not be Python identifiers
  and must not collide with pydantic's own attributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property
from typing import Annotated, Any, Literal, NotRequired, Required

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, create_model
from typing_extensions import TypedDict

from churn.features import events as event_features
from churn.ingest.schema import CUSTOMERS, EVENTS, PAYMENTS, TICKETS, Column, Table
from churn.ingest.values import MEASURE_BOUND
from churn.modeling.spec import FeatureSpec
from churn.modeling.thresholds import TIERS
from serving.events import history_kind

MAX_BATCH_SIZE = 1000
"""Rows per ``/score_batch`` request: one request then stays well under 100 ms and a few MB."""
MAX_HISTORY_ROWS = 100_000
"""Rows per table in one ``/score_events`` request (years of daily activity for one customer)."""

EARLIEST = date(1900, 1, 1)
LATEST = date(2199, 12, 31)

FORBID = ConfigDict(extra="forbid")
CUSTOMER_ID = Annotated[str, Field(min_length=1, max_length=256, description="Customer id.")]
THRESHOLD = Annotated[
    float | None,
    Field(
        default=None,
        ge=0.0,
        le=1.0,
        strict=True,
        allow_inf_nan=False,
        description="Decision threshold for churn_label; default: the model card's.",
    ),
]


class Reason(BaseModel):
    """One feature's push on this customer's risk, in log-odds (positive raises the risk)."""

    feature: str
    value: Any
    contribution: float
    text: str | None = Field(
        default=None,
        description='The reason in plain language, e.g. "3 logins in the last 30 days (fewer '
        'than 80% of customers)": rounded value, direction, and a comparison with the '
        "customers the model was trained on.",
    )


def _absent(value: object) -> bool:
    """Optional score fields are left out of the answer, not sent as null."""
    return value is None


class Score(BaseModel):
    """The answer for one customer."""

    customer_id: str
    churn_probability: float = Field(ge=0.0, le=1.0)
    churn_label: Literal[0, 1]
    threshold: float
    risk_tier: Literal[TIERS]  # type: ignore[valid-type]
    reasons: list[Reason]
    model_version: str
    feature_order: list[str]
    p_churn_30d: float | None = Field(default=None, ge=0.0, le=1.0, exclude_if=_absent)
    p_churn_90d: float | None = Field(default=None, ge=0.0, le=1.0, exclude_if=_absent)
    p_churn_180d: float | None = Field(default=None, ge=0.0, le=1.0, exclude_if=_absent)
    expected_lifetime_months: float | None = Field(default=None, exclude_if=_absent)
    clv: float | None = Field(
        default=None,
        exclude_if=_absent,
        description="Present when the model has a survival curve (not for a flat source): "
        "p_churn_30d/90d/180d (never decreasing; a horizon the training history could not "
        "check is left out), expected_lifetime_months (capped at 60) and clv (discounted "
        "value over that lifetime), as in customer_scores.",
    )
    model_role: Literal["champion", "challenger"] | None = Field(
        default=None,
        exclude_if=lambda role: role is None,
        description="Which model answered, present only while a challenger is served "
        "(shadow or canary mode; serving.challenger). model_version is that model's version.",
    )


class ScoreBatchResponse(BaseModel):
    scores: list[Score]


class ModelRequest(BaseModel):
    """``/model`` takes an empty object; the route is POST only because BentoML APIs are."""

    model_config = FORBID


def feature_annotation(spec: FeatureSpec, nullable: bool = False) -> Any:
    """The pydantic type of one feature: categories, strict numbers and bounds from the spec;
    a ``nullable`` feature also takes ``null`` (missing, as the model saw it in training)."""
    description = spec.description
    if spec.kind == "categorical":
        categories = tuple(spec.categories or ())
        allowed: Any = Literal[categories]  # type: ignore[valid-type]
        return Annotated[allowed | None if nullable else allowed, Field(description=description)]
    python_type = int if spec.dtype == "integer" else float
    bounds: dict[str, Any] = {}
    if spec.minimum is not None:
        bounds["ge"] = int(spec.minimum) if python_type is int else spec.minimum
    if spec.maximum is not None:
        bounds["le"] = int(spec.maximum) if python_type is int else spec.maximum
    if python_type is float:
        bounds["allow_inf_nan"] = False
    if nullable:
        value = Annotated[python_type, Field(strict=True, **bounds)]
        return Annotated[value | None, Field(description=description)]
    return Annotated[python_type, Field(strict=True, description=description, **bounds)]


def _in_calendar_range(value: date) -> date:
    """Refuse dates (and times, by their own calendar day) outside EARLIEST..LATEST."""
    if value is not None and not EARLIEST.year <= value.year <= LATEST.year:
        raise ValueError(f"must be between {EARLIEST.isoformat()} and {LATEST.isoformat()}")
    return value


BOUNDED = AfterValidator(_in_calendar_range)


def nullable_features(card: Mapping[str, Any]) -> frozenset[str]:
    """Features whose training SQL yields NULL by design, from the card's generated event family:
    a window's mean measure without events, a profile column of a customer without a profile.
    The key must still be sent (``null``); the model encodes it as missing, as in training."""
    spec_data = card.get(event_features.CARD_KEY)
    if spec_data is None:
        return frozenset()
    spec = event_features.EventFeatureSpec.from_dict(spec_data)
    return frozenset(f.name for f in event_features.features(spec) if f.nullable)


def column_annotation(column: Column, *, optional: bool = False) -> Any:
    """The pydantic type of one raw-table column, with the contract's allowed values and range."""
    kind = column.sql_type.upper()
    extra: dict[str, Any] = {}
    if column.allowed is not None:
        python_type: Any = Literal[column.allowed]  # type: ignore[valid-type]
    elif kind == "VARCHAR":
        python_type, extra = str, {"min_length": 1, "max_length": 256}
    elif kind == "DATE":
        python_type = Annotated[date, BOUNDED]
    elif kind == "TIMESTAMP":
        python_type = Annotated[datetime, BOUNDED]
    elif kind == "INTEGER":
        python_type, extra = int, {"strict": True}
    else:
        python_type, extra = float, {"strict": True, "allow_inf_nan": False}
    if column.minimum is not None:
        extra["ge"] = column.minimum
    if column.maximum is not None:
        extra["le"] = column.maximum
    if optional or not column.required:
        return Annotated[python_type | None, Field(default=None, description=column.description)]
    return Annotated[python_type, Field(description=column.description, **extra)]


def table_model(table: Table, name: str, optional: Sequence[str] = ()) -> type[BaseModel]:
    """A row of a raw table; ``optional`` columns may be left out (ids the SQL never reads)."""
    fields = {
        column.name: column_annotation(column, optional=column.name in optional)
        for column in table.columns
    }
    return create_model(name, __config__=FORBID, __doc__=table.description, **fields)


@dataclass(frozen=True)
class Schemas:
    """The request models of one packaged model.

    ``features`` (and a batch row) are TypedDicts, not models: pydantic validates them with the
    same strict rules and the same JSON schema, but hands the route plain dicts, which is what
    scoring and the prediction log consume. A model per row would cost a ``model_dump()`` per
    row on top (10.7 against 6.6 ms for a 1,000-row batch).
    """

    features: type[dict[str, Any]]
    score_request: type[BaseModel]
    batch_request: type[BaseModel]
    events_request: type[BaseModel]

    @cached_property
    def features_adapter(self) -> TypeAdapter[dict[str, Any]]:
        """Validates a computed feature row (``/score_events``) by the request rules."""
        return TypeAdapter(self.features)


def _typed_dict(name: str, doc: str, fields: Mapping[str, Any]) -> type[dict[str, Any]]:
    """A TypedDict that refuses unknown keys, every field required unless ``NotRequired``."""
    typed = TypedDict(name, dict(fields))  # type: ignore[misc]  # noqa: UP013 (names are data)
    typed.__doc__ = doc
    typed.__pydantic_config__ = FORBID  # type: ignore[attr-defined]
    return typed  # type: ignore[return-value]


def build_schemas(card: Mapping[str, Any], specs: Sequence[FeatureSpec]) -> Schemas:
    """Models for every route, named so the OpenAPI document reads well."""
    nullable = nullable_features(card)
    features = _typed_dict(
        "Features",
        f"The {len(specs)} inputs of {card.get('model_kind', 'the model')}; all required.",
        {spec.name: feature_annotation(spec, spec.name in nullable) for spec in specs},
    )
    score_request = create_model(
        "ScoreRequest",
        __config__=FORBID,
        customer_id=CUSTOMER_ID,
        features=features,
        threshold=THRESHOLD,
    )
    customer_row = _typed_dict(
        "BatchCustomer",
        "One customer of a batch.",
        {"customer_id": CUSTOMER_ID, "features": features},
    )
    batch_request = create_model(
        "ScoreBatchRequest",
        __config__=FORBID,
        customers=Annotated[
            list[customer_row],  # type: ignore[valid-type]
            Field(min_length=1, max_length=MAX_BATCH_SIZE),
        ],
        threshold=THRESHOLD,
    )
    return Schemas(features, score_request, batch_request, events_request(card, specs))


def events_request(card: Mapping[str, Any], specs: Sequence[FeatureSpec]) -> type[BaseModel]:
    """``/score_events``'s body for this model: an event log's own columns, the five raw
    tables, or (a flat table's model) any object, refused by the route with its reason."""
    kind = history_kind(card)
    if kind == "event_log":
        spec = event_features.EventFeatureSpec.from_dict(card[event_features.CARD_KEY])
        return _event_log_request(spec, specs)
    if kind is None:
        return create_model(
            "ScoreEventsRequest",
            __config__=ConfigDict(extra="allow"),
            __doc__="This model was trained on a flat customer table: it computes no features "
            "from events, so every body is answered 400 with the reason; use /score.",
        )
    return _events_request()


AS_OF = Annotated[
    datetime,
    BOUNDED,
    Field(
        description="Score as of this time: features use history strictly before the "
        "start of its UTC day, like the offline snapshot at that observation date."
    ),
]
TEXT = Annotated[str, Field(min_length=1, max_length=256)]


def _profile_annotation(sql_type: str, feature: FeatureSpec | None, description: str) -> Any:
    """A profile value: one of the model's categories, or a strict number in its bounds;
    ``null`` (unknown) is always allowed, as a missing customers row is in training."""
    if feature is not None and feature.kind == "categorical" and sql_type.upper() == "VARCHAR":
        allowed: Any = Literal[tuple(feature.categories or ())]  # type: ignore[valid-type]
        return NotRequired[Annotated[allowed | None, Field(description=description)]]
    base = sql_type.upper()
    extra: dict[str, Any] = {}
    if base in ("INTEGER", "BIGINT"):
        python_type: Any = int
        extra["strict"] = True
    elif base == "BOOLEAN":
        python_type, extra["strict"] = bool, True
    elif base == "VARCHAR":
        python_type, extra = str, {"min_length": 1, "max_length": 256}
    else:
        python_type, extra = float, {"strict": True, "allow_inf_nan": False}
    if feature is not None and python_type in (int, float):
        if feature.minimum is not None:
            extra["ge"] = int(feature.minimum) if python_type is int else feature.minimum
        if feature.maximum is not None:
            extra["le"] = int(feature.maximum) if python_type is int else feature.maximum
    return NotRequired[Annotated[python_type | None, Field(description=description, **extra)]]


def _event_log_request(
    spec: event_features.EventFeatureSpec, specs: Sequence[FeatureSpec]
) -> type[BaseModel]:
    """The body of an event-log model, its profile and measure columns from the card."""
    by_name = {s.name: s for s in specs}
    every = event_features.features(spec)
    profile_features = every[len(every) - len(spec.profile) :]  # the profile columns come last
    customer_fields: dict[str, Any] = {
        "customer_id": Required[CUSTOMER_ID],
        "signup_date": NotRequired[
            Annotated[date | None, BOUNDED, Field(description="Signup date, when known.")]
        ],
    }
    for (column, _, sql_type), feature in zip(spec.profile, profile_features, strict=True):
        customer_fields[column] = _profile_annotation(
            sql_type,
            by_name.get(feature.name),
            f"Profile column {column!r} (feature {feature.name}).",
        )
    number = Annotated[  # staging's bound: larger values overflow the feature SQL (a 500)
        float | None,
        Field(strict=True, allow_inf_nan=False, ge=-MEASURE_BOUND, le=MEASURE_BOUND),
    ]
    event_fields: dict[str, Any] = {
        "event_time": Required[
            Annotated[datetime, BOUNDED, Field(description="When it happened.")]
        ],
        "event_type": NotRequired[
            Annotated[
                TEXT | None,
                Field(description="Any text; types outside the model's vocabulary count as other."),
            ]
        ],
        "session_id": NotRequired[TEXT | None],
        "event_id": NotRequired[TEXT | None],
        "customer_id": NotRequired[
            Annotated[TEXT | None, Field(description="When sent, must be the customer's.")]
        ],
    }
    for measure in spec.measures:
        event_fields[measure] = NotRequired[
            Annotated[number, Field(description=f"Measure {measure!r}.")]
        ]
    customer = _typed_dict(
        "EventLogCustomer", "The customer and any profile columns.", customer_fields
    )
    event = _typed_dict("LogEvent", "One event of the customer's log.", event_fields)
    return create_model(
        "ScoreEventsRequest",
        __config__=FORBID,
        customer=customer,
        events=Annotated[list[event], Field(default_factory=list, max_length=MAX_HISTORY_ROWS)],  # type: ignore[valid-type]
        as_of=AS_OF,
        threshold=THRESHOLD,
    )


def _events_request() -> type[BaseModel]:
    """``/score_events``: one customer's raw history; ``customer_id`` on the history rows and
    their own ids are optional (the profile names the customer, the SQL never reads the ids)."""
    history_optional = ("customer_id", "event_id", "payment_id", "ticket_id")
    profile = table_model(CUSTOMERS, "CustomerProfile")
    event = table_model(EVENTS, "Event", history_optional)
    payment = table_model(PAYMENTS, "Payment", history_optional)
    ticket = table_model(TICKETS, "Ticket", history_optional)

    def rows(model: type[BaseModel]) -> Any:
        return Annotated[list[model], Field(default_factory=list, max_length=MAX_HISTORY_ROWS)]  # type: ignore[valid-type]

    return create_model(
        "ScoreEventsRequest",
        __config__=FORBID,
        customer=profile,
        events=rows(event),
        payments=rows(payment),
        tickets=rows(ticket),
        as_of=AS_OF,
        threshold=THRESHOLD,
    )
