"""Source configs: the user's own CSV or Parquet files mapped onto the pipeline (``CHURN_SOURCE``).

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

Parsing is strict: an unknown key or a missing file is an error that names the key or file,
raised when the code location loads, not halfway through a run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

from churn.ingest.schema import TABLES_BY_NAME
from churn.warehouse import table_exists

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
    """A source config that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Observation:
    """The observation calendar: monthly dates from ``start`` to ``end`` (both month starts)."""

    start: date
    end: date


@dataclass(frozen=True)
class FlatSource:
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


@dataclass(frozen=True)
class MappedTable:
    """One file of an events source and how its columns map onto the contract's names."""

    path: Path
    columns: Mapping[str, str] = field(default_factory=dict)
    """contract column -> file column, for the columns whose names differ."""
    measures: tuple[str, ...] = ()
    """Numeric columns of an event log's events, summed and averaged per window."""
    ignore: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    """Type overrides for an event log's customers table (as for a flat table)."""

    def file_column(self, contract_column: str) -> str:
        return self.columns.get(contract_column, contract_column)


@dataclass(frozen=True)
class ChurnConfig:
    """The ``churn:`` block: what counts as churn for an events source.

    Cancellation (a cancellations row, or ``cancellation_event`` in the log) counts whenever
    the source has either; ``inactive_days`` adds "no event in N days"; both make it hybrid.
    """

    inactive_days: int | None = None
    cancellation_event: str | None = None


@dataclass(frozen=True)
class SourceConfig:
    """A parsed source config; exactly one of ``flat`` / ``tables`` is set."""

    config_path: Path
    shape: Shape
    name: str
    observation: Observation | None = None
    flat: FlatSource | None = None
    tables: Mapping[str, MappedTable] = field(default_factory=dict)
    churn: ChurnConfig = field(default_factory=ChurnConfig)
    top_event_types: int = DEFAULT_TOP_EVENT_TYPES

    @property
    def is_event_log(self) -> bool:
        """An events source without the five-table subscription schema (no payments or
        tickets): its features come from its own vocabulary alone."""
        return self.shape == "events" and not {"payments", "tickets"} & set(self.tables)

    @property
    def has_cancellations(self) -> bool:
        return "cancellations" in self.tables or self.churn.cancellation_event is not None


def _date(value: Any, where: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError as error:
        raise SourceConfigError(f"{where} must be a date YYYY-MM-DD, got {value!r}") from error


def _mapping(value: Any, where: str, shape: str) -> Mapping[str, Any]:
    """``value`` when it is a mapping (``None`` reads as empty); else an error naming the key."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SourceConfigError(f"{where} must be a mapping {shape}, got {value!r}")
    return value


def _text(value: Any, where: str, what: str = "a column name") -> str:
    if not isinstance(value, str) or not value.strip():
        raise SourceConfigError(f"{where} must be {what} (text), got {value!r}")
    return value


def _integer(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SourceConfigError(f"{where} must be a whole number, got {value!r}")
    try:
        return int(value)
    except ValueError as error:
        raise SourceConfigError(f"{where} must be a whole number, got {value!r}") from error


def _share(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SourceConfigError(f"{where} must be a share between 0 and 1, got {value!r}")
    try:
        share = float(value)
    except ValueError as error:
        raise SourceConfigError(
            f"{where} must be a share between 0 and 1, got {value!r}"
        ) from error
    if not 0 < share < 1:
        raise SourceConfigError(f"{where} must be a share between 0 and 1 (exclusive), got {share}")
    return share


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _file(base: Path, value: Any, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise SourceConfigError(f"{where} must be a file path, got {value!r}")
    path = Path(value) if Path(value).is_absolute() else (base / value)
    if path.suffix.lower() not in SUFFIXES:
        raise SourceConfigError(f"{where}: {value} is not a {' or '.join(SUFFIXES)} file")
    if not path.exists():
        raise SourceConfigError(f"{where}: file {path} does not exist")
    return path.resolve()


def _only(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SourceConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})"
        )


def _names(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SourceConfigError(f"{where} must be a list of column names")
    return tuple(value)


def _observation(data: Any, where: str) -> Observation | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise SourceConfigError(f"{where} must be a mapping with start and end")
    _only(data, {"start", "end"}, where)
    if "start" not in data or "end" not in data:
        raise SourceConfigError(f"{where} needs both start and end")
    start = _month_start(_date(data.get("start"), f"{where}.start"))
    end = _month_start(_date(data.get("end"), f"{where}.end"))
    if end < start:
        raise SourceConfigError(f"{where}: end {end} is before start {start}")
    return Observation(start, end)


def _flat(data: Mapping[str, Any], base: Path, where: str) -> FlatSource:
    allowed = {"table", "id_column", "label", "time_column", "as_of", "columns", "evaluation"}
    _only(data, allowed | {"shape", "name", "observation"}, where)
    label = data.get("label")
    if not isinstance(label, Mapping) or "column" not in label or "positive" not in label:
        raise SourceConfigError(f"{where}.label must be {{column: <name>, positive: <value>}}")
    _only(label, {"column", "positive"}, f"{where}.label")
    positive = label["positive"]
    values = positive if isinstance(positive, list) else [positive]
    if not values or not all(isinstance(v, str | int | float | bool) for v in values):
        raise SourceConfigError(
            f"{where}.label.positive must be a value (or a list of values) of the label column, "
            f"got {positive!r}"
        )
    positives = tuple(str(v).lower() if isinstance(v, bool) else str(v) for v in values)
    columns = _mapping(data.get("columns"), f"{where}.columns", "{categorical, numeric, ignore}")
    _only(columns, {"categorical", "numeric", "ignore"}, f"{where}.columns")
    evaluation = _mapping(
        data.get("evaluation"),
        f"{where}.evaluation",
        "{cv_folds, validation_share, test_share, seed}",
    )
    _only(evaluation, {"cv_folds", "validation_share", "test_share", "seed"}, f"{where}.evaluation")
    if not isinstance(data.get("id_column"), str):
        raise SourceConfigError(f"{where}.id_column must name the customer id column")
    cv_folds = _integer(evaluation.get("cv_folds", 0), f"{where}.evaluation.cv_folds")
    if cv_folds == 1 or cv_folds < 0:
        raise SourceConfigError(f"{where}.evaluation.cv_folds must be 0 (off) or at least 2")
    validation_share = _share(
        evaluation.get("validation_share", 0.15), f"{where}.evaluation.validation_share"
    )
    test_share = _share(evaluation.get("test_share", 0.15), f"{where}.evaluation.test_share")
    if validation_share + test_share >= 1:
        raise SourceConfigError(
            f"{where}.evaluation: validation_share + test_share must leave rows to train on "
            f"(got {validation_share} + {test_share})"
        )
    time_column = data.get("time_column")
    return FlatSource(
        path=_file(base, data.get("table"), f"{where}.table"),
        id_column=_text(data["id_column"], f"{where}.id_column"),
        label_column=_text(label["column"], f"{where}.label.column"),
        positive=positives,
        time_column=None if time_column is None else _text(time_column, f"{where}.time_column"),
        as_of=_date(data["as_of"], f"{where}.as_of") if data.get("as_of") else None,
        categorical=_names(columns.get("categorical"), f"{where}.columns.categorical"),
        numeric=_names(columns.get("numeric"), f"{where}.columns.numeric"),
        ignore=_names(columns.get("ignore"), f"{where}.columns.ignore"),
        cv_folds=cv_folds,
        validation_share=validation_share,
        test_share=test_share,
        seed=_integer(evaluation.get("seed", 42), f"{where}.evaluation.seed"),
    )


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SourceConfigError(f"{where} must be a positive whole number of days, got {value!r}")
    return value


def _churn(data: Any, where: str) -> ChurnConfig:
    if data is None:
        return ChurnConfig()
    if not isinstance(data, Mapping):
        raise SourceConfigError(f"{where} must be a mapping (inactive_days, cancellation_event)")
    _only(data, {"inactive_days", "cancellation_event"}, where)
    inactive = data.get("inactive_days")
    event = data.get("cancellation_event")
    if event is not None and (not isinstance(event, str) or not event):
        raise SourceConfigError(f"{where}.cancellation_event must be an event type (text)")
    return ChurnConfig(
        inactive_days=None
        if inactive is None
        else _positive_int(inactive, f"{where}.inactive_days"),
        cancellation_event=event,
    )


def _top_event_types(data: Any, where: str) -> int:
    if data is None:
        return DEFAULT_TOP_EVENT_TYPES
    if not isinstance(data, Mapping):
        raise SourceConfigError(f"{where} must be a mapping (top_event_types)")
    _only(data, {"top_event_types"}, where)
    top = data.get("top_event_types", DEFAULT_TOP_EVENT_TYPES)
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise SourceConfigError(f"{where}.top_event_types must be a whole number >= 0")
    return top


def _event_log_tables(data: Mapping[str, Any], base: Path, where: str) -> dict[str, MappedTable]:
    """An event log: ``events`` required, ``customers`` and ``cancellations`` optional."""
    _only(data, set(EVENT_LOG_TABLES), where)
    if "events" not in data:
        raise SourceConfigError(f"{where}: an event log needs at least the events table")
    tables = {}
    for name, spec in data.items():
        here = f"{where}.{name}"
        if isinstance(spec, str):
            spec = {"path": spec}
        if not isinstance(spec, Mapping):
            raise SourceConfigError(f"{here} must be a file path or {{path, columns}}")
        extra = {"events": {"measures"}, "customers": {"ignore", "categorical", "numeric"}}
        _only(spec, {"path", "columns"} | extra.get(name, set()), here)
        columns = spec.get("columns") or {}
        if not isinstance(columns, Mapping):
            raise SourceConfigError(f"{here}.columns must map column roles to file columns")
        _only(columns, set(EVENT_LOG_COLUMNS[name]), f"{here}.columns")
        for role, column in columns.items():
            if not isinstance(column, str) or not column:
                raise SourceConfigError(f"{here}.columns.{role} must name a column of the file")
        measures = _names(spec.get("measures"), f"{here}.measures")
        if len(set(measures)) != len(measures):
            raise SourceConfigError(f"{here}.measures lists a column twice")
        tables[name] = MappedTable(
            _file(base, spec.get("path"), f"{here}.path"),
            dict(columns),
            measures=measures,
            ignore=_names(spec.get("ignore"), f"{here}.ignore"),
            categorical=_names(spec.get("categorical"), f"{here}.categorical"),
            numeric=_names(spec.get("numeric"), f"{here}.numeric"),
        )
    return tables


def _tables(data: Any, base: Path, where: str) -> dict[str, MappedTable]:
    if not isinstance(data, Mapping):
        raise SourceConfigError(f"{where} must map each table name to {{path, columns}}")
    if not {"payments", "tickets"} & set(data):
        return _event_log_tables(data, base, where)
    _only(data, set(TABLES_BY_NAME), where)
    missing = [name for name in TABLES_BY_NAME if name not in data]
    if missing:
        raise SourceConfigError(f"{where}: missing table(s) {', '.join(missing)}")
    tables = {}
    for name, spec in data.items():
        here = f"{where}.{name}"
        if isinstance(spec, str):
            spec = {"path": spec}
        spec = _mapping(spec, here, "{path, columns} (or a path)")
        _only(spec, {"path", "columns"}, here)
        columns = dict(_mapping(spec.get("columns"), f"{here}.columns", "{contract: file column}"))
        _only(columns, set(TABLES_BY_NAME[name].column_names), f"{here}.columns")
        for contract, column in columns.items():
            _text(column, f"{here}.columns.{contract}")
        tables[name] = MappedTable(_file(base, spec.get("path"), f"{here}.path"), columns)
    return tables


def parse_source(data: Mapping[str, Any], config_path: Path) -> SourceConfig:
    """A :class:`SourceConfig` from the YAML's mapping; relative paths resolve next to it."""
    where = config_path.name
    if not isinstance(data, Mapping):
        raise SourceConfigError(f"{where}: expected a mapping at the top level")
    shape = data.get("shape")
    if shape not in ("flat", "events"):
        raise SourceConfigError(f"{where}.shape must be 'flat' or 'events', got {shape!r}")
    base = config_path.parent
    name = data.get("name") or config_path.parent.name
    if not isinstance(name, str | int | float):
        raise SourceConfigError(f"{where}.name must be text, got {name!r}")
    name = str(name)
    observation = _observation(data.get("observation"), f"{where}.observation")
    if shape == "flat":
        flat = _flat(data, base, where)
        if flat.time_column and observation is None:
            raise SourceConfigError(
                f"{where}: a flat table with time_column needs observation: {{start, end}} "
                "(the monthly calendar its rows fall into)"
            )
        return SourceConfig(config_path, "flat", name, observation, flat=flat)
    _only(data, {"shape", "name", "observation", "tables", "churn", "features"}, where)
    if observation is None:
        raise SourceConfigError(f"{where}: an events source needs observation: {{start, end}}")
    config = SourceConfig(
        config_path,
        "events",
        name,
        observation,
        tables=_tables(data.get("tables"), base, where),
        churn=_churn(data.get("churn"), f"{where}.churn"),
        top_event_types=_top_event_types(data.get("features"), f"{where}.features"),
    )
    if not config.has_cancellations and config.churn.inactive_days is None:
        raise SourceConfigError(
            f"{where}.churn: without a cancellations table, say what churn is: "
            "inactive_days: N and/or cancellation_event: <event type>"
        )
    return config


def load_source(path: str | Path) -> SourceConfig:
    """Read and validate a source config YAML."""
    import yaml

    config_path = Path(path).resolve()
    if not config_path.exists():
        raise SourceConfigError(f"CHURN_SOURCE={path}: no such file")
    try:
        data = yaml.load(config_path.read_text(encoding="utf-8"), Loader=_loader())
    except yaml.YAMLError as error:
        raise SourceConfigError(f"{config_path.name}: not valid YAML ({error})") from error
    return parse_source(data, config_path)


TEXT_TAGS = ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool")


def _loader():
    """YAML's safe loader, but dates and yes/no stay text: PyYAML turns ``2025-13-45`` into a
    bare ``ValueError`` while loading, before any key is known (as text, :func:`_date` rejects
    it naming the key), and ``positive: yes`` into ``True``, which never matches a label column
    holding ``yes``. No key of a source config takes a boolean."""
    import yaml

    class SourceLoader(yaml.SafeLoader):
        pass

    SourceLoader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in TEXT_TAGS]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return SourceLoader


def flat_observation_date(source: SourceConfig, today: date | None = None) -> date:
    """The one observation date of a flat table without a time column: ``as_of``, else the
    first day of the current month (the load date's month, so partitions stay stable)."""
    assert source.flat is not None
    if source.flat.as_of is not None:
        return source.flat.as_of
    return _month_start(today or date.today())


SOURCE_TABLE = "raw_source"
"""One row: which source the raw layer was last loaded from. Downstream assets read the source
from here, not from the environment, so a run-config override on the raw asset carries through
the whole graph."""


def record_source(
    con, source: str, config: SourceConfig | None, observation_date: date | None
) -> None:
    con.execute(
        f"CREATE OR REPLACE TABLE {SOURCE_TABLE} (source VARCHAR, shape VARCHAR, "
        "observation_date DATE, loaded_at TIMESTAMPTZ)"
    )
    shape = "synthetic" if config is None else config.shape
    con.execute(
        f"INSERT INTO {SOURCE_TABLE} VALUES (?, ?, ?, now())", [source, shape, observation_date]
    )


def active_source(con) -> tuple[SourceConfig | None, date | None]:
    """The source config (None for synthetic) and flat observation date the raw layer holds."""
    if not table_exists(con, SOURCE_TABLE):
        return None, None
    source, _, observation_date = con.execute(
        f"SELECT source, shape, observation_date FROM {SOURCE_TABLE}"
    ).fetchone()
    if source == "synthetic":
        return None, None
    return load_source(source), observation_date
