"""The source config: the user's own files mapped onto the pipeline (``CHURN_SOURCE``).

Two shapes, one YAML file each (paths inside it are relative to the YAML file):

* ``flat`` — one customer table with an id column and a label column. Its other columns become
  the features after type inference (:mod:`churn.ingest.flat`); there is no event history, so each
  customer is observed once, at ``as_of``.
* ``events`` — either the five subscription tables (customers, events, payments, tickets,
  cancellations), each with its own file and column names, renamed onto the raw-table contract
  (:mod:`churn.ingest.schema`) while landing; or an *event log*: only ``events`` (a customer id
  and an event time; optionally ``event_type``, ``session_id``, ``event_id`` and numeric
  ``measures``), with optional ``customers`` (any profile columns, optional ``signup_date``) and
  ``cancellations`` tables (:mod:`churn.ingest.eventlog`). ``observation`` sets the monthly
  calendar, ``churn`` what churn means (``inactive_days``, ``cancellation_event``; see
  :class:`ChurnConfig`), ``features.top_event_types`` how many event types get own features.

Two layers of pydantic models, because the YAML is written for people and the config is read by
code:

* the YAML models (:class:`FlatYaml`, :class:`EventsYaml` and their blocks) describe the file as
  written. Their JSON Schema is ``docs/source.schema.json`` (``python -m churn.sources.config``),
  so an editor completes and checks a user's YAML before anything runs;
* the config (:class:`SourceConfig` with :class:`FlatSource`, :class:`MappedTable`,
  :class:`Observation`, :class:`ChurnConfig`) is what the pipeline reads: frozen, and shaped for
  its readers (a flat source's keys sit at the YAML's top level, its config in
  ``SourceConfig.flat``).

Parsing is strict and happens when the code location loads, not halfway through a run: every
problem (an unknown key, a wrong type, a missing file) is one line of a
:class:`SourceConfigError` naming the file and the dotted key, e.g.
``source.yaml: tables.events.path: file /data/events.csv does not exist``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    create_model,
    model_validator,
)

from churn.ingest.schema import TABLES_BY_NAME

Shape = Literal["flat", "events"]
SUFFIXES = (".csv", ".parquet", ".jsonl", ".json")
EVENT_LOG_TABLES = ("events", "customers", "cancellations")
"""The tables of an event log: only ``events`` is required."""
EVENT_LOG_COLUMNS = {
    "events": ("customer_id", "event_time", "event_type", "session_id", "event_id"),
    "customers": ("customer_id", "signup_date"),
    "cancellations": ("customer_id", "cancel_date", "churn_type", "reason"),
}
"""Columns an event log's tables may map; the first two of events and cancellations and the
first of customers are required, the rest are used when present."""
DEFAULT_TOP_EVENT_TYPES = 10


class SourceConfigError(ValueError):
    """A source config that cannot be used; each line names the file and the key."""


class _KeyedError(ValueError):
    """A rule across keys, checked once they validated: ``key`` says where it belongs, since a
    model validator's error would otherwise point at the enclosing block."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


# --- values: each check names what the key must be, pydantic adds where it is --------------------


def _text(what: str) -> PlainValidator:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"must be {what} (text), got {value!r}")
        return value

    return PlainValidator(check, json_schema_input_type=str)


ColumnName = Annotated[str, _text("a column name")]
EventType = Annotated[str, _text("an event type")]


def _name(value: Any) -> str | None:
    """Numbers are fine as a name (``name: 2024``); a blank one falls back to the folder's."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | None):
        raise ValueError(f"must be text, got {value!r}")
    return str(value) if value else None


def _iso_date(value: Any) -> date:
    """Dates arrive as text (the YAML loader keeps them so): a bad one is rejected here, where
    the key is known, rather than by PyYAML before any key is."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"must be a date YYYY-MM-DD, got {value!r}") from None


def _month_start(value: Any) -> date:
    return _iso_date(value).replace(day=1)


IsoDate = Annotated[date, PlainValidator(_iso_date, json_schema_input_type=date)]
MonthStart = Annotated[date, PlainValidator(_month_start, json_schema_input_type=date)]


def _whole_number(value: Any) -> int:
    """An integer or its text; a bool or a fraction is a mistake, not a number to round."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"must be a whole number, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"must be a whole number, got {value!r}") from None


def _folds(value: int) -> int:
    if value == 1 or value < 0:
        raise ValueError(f"must be 0 (off) or at least 2, got {value}")
    return value


def _share(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"must be a share between 0 and 1, got {value!r}")
    try:
        share = float(value)
    except ValueError:
        raise ValueError(f"must be a share between 0 and 1, got {value!r}") from None
    if not 0 < share < 1:
        raise ValueError(f"must be a share between 0 and 1 (exclusive), got {share}")
    return share


def _counting(minimum: int, what: str) -> PlainValidator:
    """A strict whole number of at least ``minimum``: text or a bool here is a typo."""

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"must be {what}, got {value!r}")
        return value

    return PlainValidator(check, json_schema_input_type=int)


WholeNumber = Annotated[int, PlainValidator(_whole_number, json_schema_input_type=int)]
Folds = Annotated[
    WholeNumber, AfterValidator(_folds), Field(json_schema_extra={"not": {"const": 1}})
]
Share = Annotated[
    float,
    PlainValidator(_share, json_schema_input_type=float),
    Field(json_schema_extra={"exclusiveMinimum": 0, "exclusiveMaximum": 1}),
]
Days = Annotated[
    int, _counting(1, "a positive whole number of days"), Field(json_schema_extra={"minimum": 1})
]
TopEventTypes = Annotated[
    int, _counting(0, "a whole number >= 0"), Field(json_schema_extra={"minimum": 0})
]


def _names(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"must be a list of column names, got {value!r}")
    return tuple(value)


def _distinct(names: tuple[str, ...]) -> tuple[str, ...]:
    if len(set(names)) != len(names):
        raise ValueError("lists a column twice")
    return names


Names = Annotated[tuple[str, ...], PlainValidator(_names, json_schema_input_type=list[str] | None)]
Measures = Annotated[
    Names, AfterValidator(_distinct), Field(json_schema_extra={"uniqueItems": True})
]

_Scalar = str | int | float | bool


def _positives(value: Any) -> tuple[str, ...]:
    """The label's positive values as text: booleans lower-cased, as a CSV or Parquet reader
    shows them (``true``), so ``positive: true`` matches."""
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, _Scalar) for v in values):
        raise ValueError(
            f"must be a value (or a list of values) of the label column, got {value!r}"
        )
    return tuple(str(v).lower() if isinstance(v, bool) else str(v) for v in values)


Positives = Annotated[
    tuple[str, ...], PlainValidator(_positives, json_schema_input_type=_Scalar | list[_Scalar])
]


def _file(value: Any, info: ValidationInfo) -> Path:
    """An existing data file, relative to the YAML file (the ``base`` of the validation
    context), so a config works from any working directory."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a file path, got {value!r}")
    base = Path((info.context or {}).get("base", "."))
    path = Path(value) if Path(value).is_absolute() else base / value
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"{value} is not a {' or '.join(SUFFIXES)} file")
    if not path.exists():
        raise ValueError(f"file {path} does not exist")
    return path.resolve()


DataFile = Annotated[
    Path,
    PlainValidator(_file, json_schema_input_type=str),
    Field(
        description="The data file (.csv, .parquet, .jsonl or .json), relative to this YAML "
        "file or absolute."
    ),
]


# --- the YAML's blocks ---------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Block(_Frozen):
    """A block of the YAML: an unknown key is an error that lists the allowed ones."""

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(str(key) for key in data if key not in cls.model_fields)
            if unknown:
                raise ValueError(
                    f"unknown key(s) {', '.join(unknown)} "
                    f"(allowed: {', '.join(sorted(cls.model_fields))})"
                )
        return data


# --- the economics block -------------------------------------------------------------------------

DEFAULT_INTERVENTION_COST = 10.0
DEFAULT_SUCCESS_RATE = 0.3
DEFAULT_RETAINED_VALUE = 240.0
DEFAULT_HOLDOUT_SHARE = 0.1
"""Today's synthetic numbers (:class:`churn.modeling.training.Economics` has the same): a
contact costs 10, a kept customer is worth 240, and one contact in three keeps a churner."""


def _number(value: Any, what: str) -> float:
    """A YAML number (not text, not a bool: ``cost: "10"`` or ``cost: yes`` is a typo)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be {what}, got {value!r}")
    return float(value)


def _non_negative(value: Any) -> float:
    number = _number(value, "a number >= 0")
    if not number >= 0:
        raise ValueError(f"must be a number >= 0, got {value!r}")
    return number


def _positive(value: Any) -> float:
    number = _number(value, "a number > 0")
    if not number > 0:
        raise ValueError(f"must be a number > 0, got {value!r}")
    return number


def _success_rate(value: Any) -> float:
    rate = _number(value, "a share in (0, 1]")
    if not 0 < rate <= 1:
        raise ValueError(f"must be a share in (0, 1], got {value!r}")
    return rate


def _holdout_share(value: Any) -> float:
    share = _number(value, "a share with 0 <= share < 1")
    if not 0 <= share < 1:
        raise ValueError(f"must be a share with 0 <= share < 1, got {value!r}")
    return share


def _capacity(value: Any) -> int | float:
    """A count (``500``) or a share of the month's scored customers (``"10%"``, ``0.1``): a
    whole number is a count, a fraction or a percentage a share."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            share = float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"must be a count or a share like '10%', got {value!r}") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"must be a count >= 0 or a share like '10%', got {value!r}")
        return value
    elif isinstance(value, float):
        share = value
    else:
        raise ValueError(f"must be a count (500) or a share ('10%' or 0.1), got {value!r}")
    if not 0 < share <= 1:
        raise ValueError(f"a share must be in (0, 1] (a count is a whole number), got {value!r}")
    return share


NonNegative = Annotated[
    float,
    PlainValidator(_non_negative, json_schema_input_type=float),
    Field(json_schema_extra={"minimum": 0}),
]
Positive = Annotated[
    float,
    PlainValidator(_positive, json_schema_input_type=float),
    Field(json_schema_extra={"exclusiveMinimum": 0}),
]
SuccessRate = Annotated[
    float,
    PlainValidator(_success_rate, json_schema_input_type=float),
    Field(json_schema_extra={"exclusiveMinimum": 0, "maximum": 1}),
]
HoldoutShare = Annotated[
    float,
    PlainValidator(_holdout_share, json_schema_input_type=float),
    Field(json_schema_extra={"minimum": 0, "exclusiveMaximum": 1}),
]
Capacity = Annotated[
    int | float,
    PlainValidator(_capacity, json_schema_input_type=int | float | str),
]


class RetainedValueYaml(_Block):
    """A kept customer's value from their own history: the average monthly ``measure`` before
    the observation date, times ``months``; ``default`` where a customer has none."""

    measure: ColumnName = Field(
        description="The measure (an event log's measure, a flat table's numeric column, or "
        "amount for the five-table schema) whose monthly average is the customer's value."
    )
    months: Positive = Field(
        12.0, description="How many months of that average a kept customer is worth."
    )
    default: Positive = Field(
        DEFAULT_RETAINED_VALUE,
        description="The value of a customer without any of the measure (and the value the "
        "decision threshold is chosen with).",
    )


def _retained_value(value: Any) -> Any:
    """A number is the value of every customer; a mapping takes it from a measure."""
    if isinstance(value, Mapping):
        return RetainedValueYaml.model_validate(value)
    return _positive(value)


class EconomicsYaml(_Block):
    """The ``economics:`` block: what a retention contact costs and earns, and whom to contact.

    ``churn_label`` (the high tier) is chosen at the threshold where a contact pays on average;
    of those, the ones with a positive expected value are ranked by it and cut at ``capacity``;
    ``holdout_share`` of them are held out as the control group."""

    intervention_cost: NonNegative = Field(
        DEFAULT_INTERVENTION_COST, description="What one contact costs."
    )
    success_rate: SuccessRate = Field(
        DEFAULT_SUCCESS_RATE, description="Share of contacted churners the contact keeps."
    )
    retained_value: Annotated[
        float | RetainedValueYaml,
        PlainValidator(_retained_value, json_schema_input_type=float | RetainedValueYaml),
    ] = Field(
        DEFAULT_RETAINED_VALUE,
        description="What keeping a customer is worth: a number, or {measure, months, "
        "default}: the customer's own average monthly measure times months.",
    )
    capacity: Capacity | None = Field(
        None,
        description="Contacts per month: a count (500) or a share of the month's scored "
        "customers ('10%' or 0.1). Default: no cap.",
    )
    holdout_share: HoldoutShare = Field(
        DEFAULT_HOLDOUT_SHARE,
        description="Share of the selected customers held out (not contacted) as the control "
        "group, 0 <= share < 1.",
    )

    def config(self) -> EconomicsConfig:
        value = self.retained_value
        by_measure = isinstance(value, RetainedValueYaml)
        capacity = self.capacity
        return EconomicsConfig(
            intervention_cost=self.intervention_cost,
            success_rate=self.success_rate,
            retained_value=value.default if by_measure else value,
            retained_value_measure=value.measure if by_measure else None,
            retained_value_months=value.months if by_measure else None,
            capacity_count=capacity if isinstance(capacity, int) else None,
            capacity_share=capacity if isinstance(capacity, float) else None,
            holdout_share=self.holdout_share,
        )


class EconomicsConfig(_Frozen):
    """The economics as the pipeline reads them (the same field names as
    :class:`churn.modeling.training.Economics`, which the model card keeps)."""

    intervention_cost: float = DEFAULT_INTERVENTION_COST
    success_rate: float = DEFAULT_SUCCESS_RATE
    retained_value: float = DEFAULT_RETAINED_VALUE
    """Every customer's value, or the fallback of ``retained_value_measure``."""
    retained_value_measure: str | None = None
    retained_value_months: float | None = None
    capacity_count: int | None = None
    capacity_share: float | None = None
    """At most one of the two is set; neither: no cap."""
    holdout_share: float = DEFAULT_HOLDOUT_SHARE


_ECONOMICS = Field(
    None,
    description="Contact economics: intervention_cost, success_rate, retained_value, capacity, "
    "holdout_share (defaults: 10, 0.3, 240, no cap, 0.1).",
)


def _value_measure_check(economics: EconomicsYaml | None, allowed: tuple[str, ...], where: str):
    """A measure the source does not have is an error naming the key, before any run."""
    value = economics.retained_value if economics is not None else None
    if isinstance(value, RetainedValueYaml) and value.measure not in allowed:
        raise _KeyedError(
            "economics.retained_value.measure",
            f"{value.measure!r} is not {where} (allowed: {', '.join(allowed) or 'none'})",
        )


class Observation(_Block):
    """The observation calendar: monthly dates from ``start`` to ``end`` (both month starts,
    both included). Without ``end`` the calendar follows the data and the clock: it runs to the
    month of the newest landed event (a flat table: the current month), and grows as data
    lands, so a live source needs no edit each month."""

    start: MonthStart = Field(description="First observation date (snapped to its month start).")
    end: MonthStart | None = Field(
        None,
        description="Last observation date (snapped to its month start). Default: the month "
        "of the newest landed event (a flat table with time_column: the current month).",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Observation:
        if self.end is not None and self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


class ChurnConfig(_Block):
    """The ``churn:`` block: what counts as churn for an events source.

    Cancellation (a cancellations row, or ``cancellation_event`` in the log) counts whenever
    the source has either; ``inactive_days`` adds "no event in N days"; both make it hybrid.
    """

    inactive_days: Days | None = Field(
        None, description="Churned when the customer has no event in this many days."
    )
    cancellation_event: EventType | None = Field(
        None, description="The event type that means the customer cancelled."
    )


class Label(_Block):
    """A flat table's label column and which of its values mean churned."""

    column: ColumnName = Field(description="The label column.")
    positive: Positives = Field(
        description="The value (or list of values) of the label column that means churned."
    )


class FlatColumns(_Block):
    """Type overrides for a flat table's columns (by default their types are inferred)."""

    categorical: Names = Field((), description="Columns to treat as categories.")
    numeric: Names = Field((), description="Columns to treat as numbers.")
    ignore: Names = Field((), description="Columns that are not features.")


class Evaluation(_Block):
    """How a flat table is split and evaluated."""

    cv_folds: Folds = Field(0, description="Stratified cross-validation folds: 0 (off) or >= 2.")
    validation_share: Share = Field(0.15, description="Share of rows held out for validation.")
    test_share: Share = Field(0.15, description="Share of rows held out for the test.")
    seed: WholeNumber = Field(42, description="Seed of the random split.")

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> Evaluation:
        if self.validation_share + self.test_share >= 1:
            raise ValueError(
                "validation_share + test_share must leave rows to train on "
                f"(got {self.validation_share} + {self.test_share})"
            )
        return self


def _auc_floor(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"must be a test AUC from 0 to below 1, got {value!r}")
    try:
        floor = float(value)
    except ValueError:
        raise ValueError(f"must be a test AUC from 0 to below 1, got {value!r}") from None
    if not 0 <= floor < 1:  # also refuses nan
        raise ValueError(f"must be a test AUC from 0 to below 1, got {value!r}")
    return floor


AucFloor = Annotated[
    float,
    PlainValidator(_auc_floor, json_schema_input_type=float),
    Field(json_schema_extra={"minimum": 0, "exclusiveMaximum": 1}),
]


class ModelSettings(_Block):
    """How the model is judged, for either shape."""

    auc_floor: AucFloor | None = Field(
        None,
        description="The quality gate's floor on the winner's test AUC (default 0.65; "
        "CHURN_AUC_FLOOR overrides it). Lower it for small data, knowing the model is weaker.",
    )


_MODEL = Field(None, description="How the model is judged: {auc_floor: 0.6}.")
_NAME = Field(None, description="The source's name (default: the YAML file's folder).")


class FlatYaml(_Block):
    """``shape: flat``: one customer table whose columns become the features."""

    shape: Literal["flat"] = Field(description="One customer table with id and label.")
    name: Annotated[str | None, PlainValidator(_name, json_schema_input_type=str | None)] = _NAME
    observation: Observation | None = Field(
        None, description="The monthly calendar; needed with time_column."
    )
    table: DataFile
    id_column: ColumnName = Field(description="The customer id column.")
    label: Label = Field(description="The label: {column: <name>, positive: <value>}.")
    time_column: ColumnName | None = Field(
        None, description="A date column: each row is observed in its month (needs observation)."
    )
    as_of: Annotated[IsoDate | None, BeforeValidator(lambda value: value or None)] = Field(
        None,
        description="The one observation date without time_column (default: the first day of "
        "the current month).",
    )
    columns: FlatColumns | None = Field(
        None, description="Type overrides: categorical, numeric, ignore."
    )
    evaluation: Evaluation | None = Field(
        None, description="The split: cv_folds, validation_share, test_share, seed."
    )
    economics: EconomicsYaml | None = _ECONOMICS
    model: ModelSettings | None = _MODEL

    @model_validator(mode="after")
    def _calendar_for_time_column(self) -> FlatYaml:
        if self.time_column and self.observation is None:
            raise _KeyedError(
                "observation",
                "a flat table with time_column needs observation: {start, end} "
                "(the monthly calendar its rows fall into)",
            )
        return self

    @model_validator(mode="after")
    def _value_from_a_feature_column(self) -> FlatYaml:
        value = self.economics.retained_value if self.economics is not None else None
        if isinstance(value, RetainedValueYaml):
            ignored = (self.id_column, self.label.column, *(self.columns or FlatColumns()).ignore)
            if value.measure in ignored:
                raise _KeyedError(
                    "economics.retained_value.measure",
                    f"{value.measure!r} is the id, the label or an ignored column; it must be "
                    "a numeric feature column (the customer's monthly value)",
                )
        return self

    def config(self, config_path: Path) -> SourceConfig:
        columns = self.columns or FlatColumns()
        evaluation = self.evaluation or Evaluation()
        flat = FlatSource(
            path=self.table,
            id_column=self.id_column,
            label_column=self.label.column,
            positive=self.label.positive,
            time_column=self.time_column,
            as_of=self.as_of,
            categorical=columns.categorical,
            numeric=columns.numeric,
            ignore=columns.ignore,
            cv_folds=evaluation.cv_folds,
            validation_share=evaluation.validation_share,
            test_share=evaluation.test_share,
            seed=evaluation.seed,
        )
        return SourceConfig(
            config_path=config_path,
            shape="flat",
            name=self.name or config_path.parent.name,
            observation=self.observation,
            flat=flat,
            economics=(self.economics or EconomicsYaml()).config(),
            model=self.model or ModelSettings(),
        )


def _columns_model(model_name: str, table: str, columns: tuple[str, ...]) -> type[_Block]:
    """The ``columns:`` mapping of one table, from the raw-table contract's own descriptions."""
    contract = TABLES_BY_NAME[table]
    fields: dict[str, Any] = {
        column: (
            ColumnName,
            Field(
                None,
                description=f"The file's column for {column} (default: {column}): "
                f"{contract.column(column).description}",
            ),
        )
        for column in columns
    }
    return create_model(
        model_name,
        __base__=_Block,
        __doc__=f"Contract column of {table} -> the file's column, where the names differ.",
        **fields,
    )


_COLUMNS = Field(
    None, description="Contract column -> the file's column, for the columns whose names differ."
)


class _MappedYaml(_Block):
    """One table: a path, or a mapping with the path and the columns whose names differ."""

    path: DataFile
    columns: _Block | None = None

    def mapped(self) -> MappedTable:
        """The table as the pipeline reads it; the lists only event-log tables have come
        along when this table has them."""
        columns = {} if self.columns is None else self.columns.model_dump(exclude_unset=True)
        lists = {key: getattr(self, key) for key in _TABLE_LISTS if key in type(self).model_fields}
        return MappedTable(path=self.path, columns=columns, **lists)


_TABLE_LISTS = ("measures", "ignore", "categorical", "numeric")


def _table_model(model_name: str, table: str) -> type[_MappedYaml]:
    """A five-table entry: any contract column of ``table`` may be renamed."""
    columns_model = _columns_model(
        f"{model_name}Columns", table, tuple(TABLES_BY_NAME[table].column_names)
    )
    return create_model(
        model_name,
        __base__=_MappedYaml,
        __doc__=f"The {table} table: {TABLES_BY_NAME[table].description}",
        columns=(columns_model | None, _COLUMNS),
    )


def _path_or_mapping(value: Any) -> Any:
    """``tables.<name>: file.csv`` is short for ``{path: file.csv}``."""
    return {"path": value} if isinstance(value, str) else value


def _entry(model: type[_MappedYaml]) -> Any:
    return Annotated[model, BeforeValidator(_path_or_mapping, json_schema_input_type=str | model)]


FiveTables = create_model(
    "FiveTables",
    __base__=_Block,
    __doc__="The five subscription tables, each mapped onto the raw-table contract.",
    **{
        name: (
            _entry(_table_model(f"{name.capitalize()}Table", name)),
            Field(description=f"{table.description} A file path or {{path, columns}}."),
        )
        for name, table in TABLES_BY_NAME.items()
    },
)

EventLogEventsColumns = _columns_model(
    "EventLogEventsColumns", "events", EVENT_LOG_COLUMNS["events"]
)
EventLogCustomersColumns = _columns_model(
    "EventLogCustomersColumns", "customers", EVENT_LOG_COLUMNS["customers"]
)
EventLogCancellationsColumns = _columns_model(
    "EventLogCancellationsColumns", "cancellations", EVENT_LOG_COLUMNS["cancellations"]
)


class EventLogEvents(_MappedYaml):
    """An event log's events: a customer id and an event time, any vocabulary."""

    columns: EventLogEventsColumns | None = _COLUMNS  # type: ignore[valid-type]
    measures: Measures = Field(
        (), description="Numeric columns summed and averaged per window as features."
    )


class EventLogCustomers(_MappedYaml):
    """An event log's customers: any profile columns, types inferred as for a flat table."""

    columns: EventLogCustomersColumns | None = _COLUMNS  # type: ignore[valid-type]
    ignore: Names = Field((), description="Columns that are not features.")
    categorical: Names = Field((), description="Columns to treat as categories.")
    numeric: Names = Field((), description="Columns to treat as numbers.")


class EventLogCancellations(_MappedYaml):
    """An event log's cancellations: who ended when (and optionally how and why)."""

    columns: EventLogCancellationsColumns | None = _COLUMNS  # type: ignore[valid-type]


class EventLogTables(_Block):
    """An event log: only ``events`` is required."""

    events: _entry(EventLogEvents) = Field(  # type: ignore[valid-type]
        description="The events: a file path or {path, columns, measures}."
    )
    customers: _entry(EventLogCustomers) | None = Field(  # type: ignore[valid-type]
        None, description="Profile columns: a file path or {path, columns, ignore, ...}."
    )
    cancellations: _entry(EventLogCancellations) | None = Field(  # type: ignore[valid-type]
        None, description="Cancellations: a file path or {path, columns}."
    )


def _layout(data: Any) -> str:
    """Payments or tickets make it the five-table schema; anything else is an event log."""
    keys = set(data) if isinstance(data, Mapping) else set()
    return "five tables" if {"payments", "tickets"} & keys else "event log"


_LAYOUT_TAGS = ("five tables", "event log")
Tables = Annotated[
    Annotated[FiveTables, Tag("five tables")] | Annotated[EventLogTables, Tag("event log")],  # type: ignore[valid-type]
    Discriminator(_layout),
    Field(
        description="Each table as a file path or {path, columns}. With payments or tickets, "
        "all five subscription tables; otherwise an event log (events, optional customers and "
        "cancellations)."
    ),
]


class Features(_Block):
    """How an events source's generated features are chosen."""

    top_event_types: TopEventTypes = Field(
        DEFAULT_TOP_EVENT_TYPES, description="How many event types get their own features."
    )


class EventsYaml(_Block):
    """``shape: events``: the five subscription tables, or an event log."""

    shape: Literal["events"] = Field(description="An event history per customer.")
    name: Annotated[str | None, PlainValidator(_name, json_schema_input_type=str | None)] = _NAME
    observation: Observation = Field(description="The monthly calendar: {start, end}.")
    tables: Tables
    churn: ChurnConfig | None = Field(
        None,
        description="What churn is: inactive_days and/or cancellation_event (needed without a "
        "cancellations table).",
    )
    features: Features | None = Field(None, description="Generated features: top_event_types.")
    economics: EconomicsYaml | None = _ECONOMICS
    model: ModelSettings | None = _MODEL

    @model_validator(mode="after")
    def _churn_defined(self) -> EventsYaml:
        cancellations = getattr(self.tables, "cancellations", None) is not None
        churn = self.churn or ChurnConfig()
        if not cancellations and churn.cancellation_event is None and churn.inactive_days is None:
            raise _KeyedError(
                "churn",
                "without a cancellations table, say what churn is: "
                "inactive_days: N and/or cancellation_event: <event type>",
            )
        return self

    @model_validator(mode="after")
    def _value_from_a_measure(self) -> EventsYaml:
        if isinstance(self.tables, EventLogTables):
            measures = self.tables.events.measures
            _value_measure_check(self.economics, measures, "a measure of tables.events")
        else:
            _value_measure_check(self.economics, ("amount",), "a five-table measure")
        return self

    def config(self, config_path: Path) -> SourceConfig:
        entries = {name: getattr(self.tables, name) for name in type(self.tables).model_fields}
        return SourceConfig(
            config_path=config_path,
            shape="events",
            name=self.name or config_path.parent.name,
            observation=self.observation,
            tables={name: entry.mapped() for name, entry in entries.items() if entry is not None},
            churn=self.churn or ChurnConfig(),
            top_event_types=(self.features or Features()).top_event_types,
            economics=(self.economics or EconomicsYaml()).config(),
            model=self.model or ModelSettings(),
        )


SourceYaml = Annotated[
    Annotated[FlatYaml, Tag("flat")] | Annotated[EventsYaml, Tag("events")],
    Field(discriminator="shape"),
]
"""The YAML file: its ``shape`` says which of the two it is."""
_YAML = TypeAdapter(SourceYaml)


# --- the config the pipeline reads -------------------------------------------------------------


class FlatSource(_Frozen):
    """One customer table: id, label, optional time column and type overrides."""

    path: Path
    id_column: str
    label_column: str
    positive: tuple[str, ...]
    time_column: str | None = None
    as_of: date | None = None
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    cv_folds: int = 0
    validation_share: float = 0.15
    test_share: float = 0.15
    seed: int = 42


class MappedTable(_Frozen):
    """One file of an events source and how its columns map onto the contract's names."""

    path: Path
    columns: Mapping[str, str] = Field(default_factory=dict)
    """contract column -> file column, for the columns whose names differ."""
    measures: tuple[str, ...] = ()
    """Numeric columns of an event log's events, summed and averaged per window."""
    ignore: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    """Type overrides for an event log's customers table (as for a flat table)."""

    def file_column(self, contract_column: str) -> str:
        return self.columns.get(contract_column, contract_column)


class SourceConfig(_Frozen):
    """A parsed source config; exactly one of ``flat`` / ``tables`` is set."""

    config_path: Path
    shape: Shape
    name: str
    observation: Observation | None = None
    flat: FlatSource | None = None
    tables: Mapping[str, MappedTable] = Field(default_factory=dict)
    churn: ChurnConfig = Field(default_factory=ChurnConfig)
    top_event_types: int = DEFAULT_TOP_EVENT_TYPES
    economics: EconomicsConfig = Field(default_factory=EconomicsConfig)
    model: ModelSettings = Field(default_factory=ModelSettings)

    @property
    def is_event_log(self) -> bool:
        """An events source without the five-table subscription schema (no payments or
        tickets): its features come from its own vocabulary alone."""
        return self.shape == "events" and not {"payments", "tickets"} & set(self.tables)

    @property
    def has_cancellations(self) -> bool:
        return "cancellations" in self.tables or self.churn.cancellation_event is not None


# --- loading -------------------------------------------------------------------------------------


def _message(problem: Mapping[str, Any]) -> str:
    """Pydantic's wording for the few errors it raises itself, in this module's voice."""
    kind, value = problem["type"], problem.get("input")
    if kind in ("value_error", "assertion_error"):
        return str(problem["ctx"]["error"])
    if kind == "missing":
        return "required key is missing"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping, got {value!r}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        shape = value.get("shape") if isinstance(value, Mapping) else None
        return f"must be 'flat' or 'events', got {shape!r}"
    return str(problem["msg"])


def _problem_lines(error: ValidationError, file: str) -> list[str]:
    """One ``file: dotted.key: message`` line per problem, the loc read as the YAML's keys
    (the union tags pydantic adds for the shape and the table layout are not keys)."""
    lines = []
    for problem in error.errors(include_url=False):
        loc = list(problem["loc"])
        if loc and loc[0] in ("flat", "events"):
            loc = loc[1:]
        keys = [str(part) for part in loc if part not in _LAYOUT_TAGS]
        cause = (problem.get("ctx") or {}).get("error")
        if isinstance(cause, _KeyedError):
            keys.append(cause.key)
        if problem["type"] in ("union_tag_invalid", "union_tag_not_found"):
            keys = ["shape"]
        where = f"{file}: {'.'.join(keys)}" if keys else file
        lines.append(f"{where}: {_message(problem)}")
    return lines


def parse_source(data: Mapping[str, Any], config_path: Path) -> SourceConfig:
    """A :class:`SourceConfig` from the YAML's mapping; relative paths resolve next to it."""
    if not isinstance(data, Mapping):
        raise SourceConfigError(f"{config_path.name}: expected a mapping at the top level")
    try:
        document = _YAML.validate_python(data, context={"base": config_path.parent})
    except ValidationError as error:
        raise SourceConfigError("\n".join(_problem_lines(error, config_path.name))) from None
    return document.config(config_path)


def load_source(path: str | Path) -> SourceConfig:
    """Read and validate a source config YAML."""
    config_path = Path(path).resolve()
    if not config_path.exists():
        raise SourceConfigError(f"CHURN_SOURCE={path}: no such file")
    return parse_source(read_yaml(config_path), config_path)


MAX_CONFIG_BYTES = 1 << 20
"""A source config is a page of keys; a bigger file is a mistake, not a config."""


def read_yaml(config_path: Path) -> Any:
    """The YAML's data as the config reads it: safe tags only, dates and yes/no as text, no
    aliases, at most :data:`MAX_CONFIG_BYTES`."""
    import yaml

    size = config_path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise SourceConfigError(
            f"{config_path.name}: {size:,} bytes; a source config may hold at most "
            f"{MAX_CONFIG_BYTES:,}"
        )
    try:
        return yaml.load(config_path.read_text(encoding="utf-8"), Loader=_loader())
    except yaml.YAMLError as error:
        raise SourceConfigError(f"{config_path.name}: not valid YAML ({error})") from error


TEXT_TAGS = ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool")


def _loader() -> type:
    """YAML's safe loader, but dates and yes/no stay text: PyYAML turns ``2025-13-45`` into a
    bare ``ValueError`` while loading, before any key is known (as text, the date check rejects
    it naming the key), and ``positive: yes`` into ``True``, which never matches a label column
    holding ``yes``. No key of a source config takes a boolean.

    Aliases (``*name``) are refused where they are read: a few hundred bytes of nested aliases
    expand into billions of nodes (a "billion laughs" file) before any key could be checked,
    and no key of a source config needs one."""
    import yaml

    class SourceLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    "aliases (*name) are not allowed in a source config",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)

    SourceLoader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in TEXT_TAGS]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return SourceLoader


# --- the JSON Schema -----------------------------------------------------------------------------


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the YAML (paths as the strings written), for editors and checks.

    ``docs/source.schema.json`` is this, written by ``python -m churn.sources.config``; a test
    keeps it current."""
    schema = _YAML.json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "churn source config",
        "description": "A CHURN_SOURCE YAML file: the user's own files mapped onto the churn "
        "pipeline, as shape: flat or shape: events.",
        **schema,
    }


if __name__ == "__main__":
    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")
