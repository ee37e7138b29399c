"""Features generated from an event log's own vocabulary: one point-in-time SQL for any events.

Contract (what training, the leakage check and ``/score_events`` rely on):

* :class:`EventFeatureSpec` describes the generated family: the chosen ``event_types`` (most
  frequent first; their integer code is their position + 1, every other type is code 0,
  "other"), whether other types exist, the numeric ``measures`` (staged column names), whether
  sessions exist, the profile columns ``(name, kind, sql_type)`` of the customers relation, the
  ``windows`` in days, the :class:`ChurnDefinition`, and whether the hand-written subscription
  family (:mod:`churn.features.definition`: billing, support, renewal, profile) is part of the
  model. ``to_dict()`` / ``from_dict()`` round-trip it through JSON; the model card stores it
  under the key ``"event_features"``.
* :func:`features` ``(spec) -> list[Feature]`` is the model's feature list, in column order.
* :func:`feature_sql` ``(spec, sources) -> str`` is the SELECT yielding
  ``customer_id, observation_date`` and those features for every row of ``sources.snapshots``.
  ``sources`` (:class:`~churn.features.SourceTables`) names the relations it reads:
  ``snapshots (customer_id VARCHAR, observation_date DATE)``,
  ``customers (customer_id VARCHAR, signup_date DATE, <profile columns>)`` (may be empty),
  ``events (customer_id VARCHAR, event_time TIMESTAMP, event_type VARCHAR, session_id VARCHAR,
  <measures> DOUBLE)`` and ``vocabulary (event_type VARCHAR, code INTEGER, feature_slug
  VARCHAR)`` whose rows are :func:`vocabulary_rows` ``(spec)``; with the subscription family also
  ``payments`` and ``tickets`` as the warehouse stages them. It runs as well on the warehouse as
  on an in-memory DuckDB over Arrow tables with those types.

Why a vocabulary table: event types are the user's data, so they never appear in the SQL. They
are joined to integer codes, and only our integers appear in the ``CASE`` expressions; feature
names are slugs (:func:`churn.ingest.flat.feature_name`) made unique with a numeric suffix.

Why the SQL looks the way it does: a later engine (Spark, through SQLGlot) runs the same text, so
it sticks to ``sum(CASE ...)``, ``date_diff('day', a, b)``, plain joins, aggregates and running
windows (no ASOF JOIN, lambdas or QUALIFY). Everything a feature sees happened strictly before
the observation date; sums of measures are taken in integer thousandths so that the result does
not depend on the order threads add rows in (the leakage check and online/offline parity
compare exactly).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from churn.features.definition import FEATURE_NAMES as SUBSCRIPTION_NAMES
from churn.features.definition import FEATURES as SUBSCRIPTION_FEATURES
from churn.features.definition import Feature, SourceTables
from churn.features.definition import feature_sql as subscription_sql
from churn.ingest.flat import feature_name
from churn.sql import quote_identifier

CARD_KEY = "event_features"
"""Where the model card stores :meth:`EventFeatureSpec.to_dict`."""
DEFAULT_WINDOWS = (7, 30, 90)
DEFAULT_TOP_EVENT_TYPES = 10
EWM_HALF_LIVES = (7, 30)
OTHER_SLUG = "other"


@dataclass(frozen=True)
class ChurnDefinition:
    """What counts as churn after an observation date T, and so who is observed at T.

    * ``cancellation``: a cancellation row (or the ``cancellation_event``) within
      ``horizon_days`` after T; observed: signed up before T and not cancelled by T.
    * ``inactive_days`` = N: no event in the N days from T on; observed: an event in the N days
      before T (not already lapsed).
    * both: either counts (hybrid); observed: both conditions.
    """

    cancellation: bool = True
    inactive_days: int | None = None
    cancellation_event: str | None = None
    horizon_days: int = 30

    @property
    def kind(self) -> str:
        if self.cancellation and self.inactive_days:
            return "hybrid"
        return "inactivity" if self.inactive_days else "cancellation"

    @property
    def label_days(self) -> int:
        """Days after T a label needs before it is known (the longer of the two rules)."""
        days = [self.horizon_days] if self.cancellation else []
        return max([*days, *([self.inactive_days] if self.inactive_days else [])])

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "cancellation": self.cancellation,
            "inactive_days": self.inactive_days,
            "cancellation_event": self.cancellation_event,
            "horizon_days": self.horizon_days,
            "label_days": self.label_days,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChurnDefinition:
        return cls(
            cancellation=bool(data.get("cancellation", True)),
            inactive_days=data.get("inactive_days"),
            cancellation_event=data.get("cancellation_event"),
            horizon_days=int(data.get("horizon_days", 30)),
        )


@dataclass(frozen=True)
class EventFeatureSpec:
    """The generated feature family of one source; see the module docstring for the contract."""

    event_types: tuple[str, ...] = ()
    other_types: bool = False
    measures: tuple[str, ...] = ()
    has_sessions: bool = False
    profile: tuple[tuple[str, str, str], ...] = ()
    """(column of the customers relation, kind numeric/categorical, SQL type)."""
    windows: tuple[int, ...] = DEFAULT_WINDOWS
    churn: ChurnDefinition = field(default_factory=ChurnDefinition)
    subscription_family: bool = False
    """The hand-written features of the five-table subscription schema come first."""

    def __post_init__(self) -> None:
        if not self.windows or sorted(set(self.windows)) != list(self.windows):
            raise ValueError(f"windows must be increasing day counts, got {self.windows}")

    @property
    def event_type_slugs(self) -> tuple[str, ...]:
        """One unique slug per chosen event type, in code order (collisions get ``_2``...)."""
        used: set[str] = {OTHER_SLUG}
        slugs = []
        for event_type in self.event_types:
            base = feature_name(event_type)
            slug, n = base, 1
            while slug in used:
                n += 1
                slug = f"{base}_{n}"
            used.add(slug)
            slugs.append(slug)
        return tuple(slugs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_types": list(self.event_types),
            "event_type_slugs": list(self.event_type_slugs),
            "other_types": self.other_types,
            "measures": list(self.measures),
            "has_sessions": self.has_sessions,
            "profile": [list(column) for column in self.profile],
            "windows": list(self.windows),
            "churn": self.churn.to_dict(),
            "subscription_family": self.subscription_family,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EventFeatureSpec:
        return cls(
            event_types=tuple(data.get("event_types", ())),
            other_types=bool(data.get("other_types", False)),
            measures=tuple(data.get("measures", ())),
            has_sessions=bool(data.get("has_sessions", False)),
            profile=tuple(tuple(column) for column in data.get("profile", ())),
            windows=tuple(int(w) for w in data.get("windows", DEFAULT_WINDOWS)),
            churn=ChurnDefinition.from_dict(data.get("churn") or {}),
            subscription_family=bool(data.get("subscription_family", False)),
        )


def vocabulary_rows(spec: EventFeatureSpec) -> list[tuple[str, int, str]]:
    """The vocabulary relation's rows: ``(event_type, code, feature_slug)``, codes from 1."""
    return [
        (event_type, code, slug)
        for code, (event_type, slug) in enumerate(
            zip(spec.event_types, spec.event_type_slugs, strict=True), start=1
        )
    ]


VOCABULARY_COLUMNS = (("event_type", "VARCHAR"), ("code", "INTEGER"), ("feature_slug", "VARCHAR"))


def write_vocabulary(con, spec: EventFeatureSpec, table: str = "event_vocabulary") -> None:
    """(Re)create the vocabulary table from the spec, values bound as parameters."""
    columns = ", ".join(f"{name} {kind}" for name, kind in VOCABULARY_COLUMNS)
    con.execute(f"CREATE OR REPLACE TABLE {quote_identifier(table)} ({columns})")
    rows = vocabulary_rows(spec)
    if rows:
        con.executemany(f"INSERT INTO {quote_identifier(table)} VALUES (?, ?, ?)", rows)


# --- the feature list --------------------------------------------------------------------------


def _int(name: str, description: str) -> Feature:
    return Feature(name, "INTEGER", "numeric", description)


def _real(name: str, description: str, nullable: bool = False) -> Feature:
    return Feature(name, "DOUBLE", "numeric", description, nullable=nullable)


def _measure_slugs(spec: EventFeatureSpec) -> list[str]:
    return measure_slugs(spec.measures)


def measure_slugs(measures: Sequence[str]) -> list[str]:
    """The feature-name slug of each measure, made unique (``amount``, ``amount_2``, ...): one
    rule for the generated features and for whoever looks a measure's feature up."""
    used: set[str] = set()
    slugs = []
    for measure in measures:
        base = feature_name(measure)
        slug, n = base, 1
        while slug in used:
            n += 1
            slug = f"{base}_{n}"
        used.add(slug)
        slugs.append(slug)
    return slugs


def _pairs(windows: Sequence[int]) -> list[tuple[int, int]]:
    return list(pairwise(windows))


@dataclass(frozen=True)
class _Generated:
    """A generated feature and the SQL expression (over the final joins) that computes it."""

    feature: Feature
    expression: str
    lifetime: bool = False
    """It reads the customer's whole history (``l.``: recency, first day, lifetime events),
    which the ``lifetime`` CTE computes only when a kept feature needs it."""


_READS_LIFETIME = re.compile(r"\bl\.")


def _generated(spec: EventFeatureSpec) -> list[_Generated]:
    """Every generated feature with its final SELECT expression, in column order."""
    found: list[_Generated] = []

    def add(feature: Feature, expression: str) -> None:
        found.append(
            _Generated(feature, expression, lifetime=_READS_LIFETIME.search(expression) is not None)
        )

    add(
        _int(
            "days_since_last_event",
            "Days since the last event, or since signup for a customer with no event yet.",
        ),
        "CAST(coalesce(l.recency, date_diff('day', c.signup_date, s.observation_date), 0) "
        "AS INTEGER)",
    )
    add(
        Feature(
            "tenure_days",
            "INTEGER",
            "numeric",
            "Days since signup (the first event when no signup date is known).",
            time_growing=True,
        ),
        "CAST(coalesce(date_diff('day', c.signup_date, s.observation_date), l.first_age, 0) "
        "AS INTEGER)",
    )
    for w in spec.windows:
        add(_int(f"events_{w}d", f"Events in the {w} days before the observation date."), "")
    for w in spec.windows:
        add(_int(f"active_days_{w}d", f"Days with at least one event among the last {w}."), "")
    if spec.has_sessions:
        for w in spec.windows:
            add(
                _int(
                    f"sessions_{w}d",
                    f"Sessions in the last {w} days (a session counted once per day).",
                ),
                "",
            )
    for code, slug in enumerate(spec.event_type_slugs, start=1):
        for w in spec.windows:
            add(
                _int(
                    f"type_{slug}_{w}d",
                    f"{spec.event_types[code - 1]} events in the last {w} days.",
                ),
                "",
            )
    if spec.other_types:
        for w in spec.windows:
            add(
                _int(
                    f"type_{OTHER_SLUG}_{w}d",
                    f"Events of any type outside the chosen vocabulary in the last {w} days.",
                ),
                "",
            )
    for measure, slug in zip(spec.measures, _measure_slugs(spec), strict=True):
        for w in spec.windows:
            add(_real(f"{slug}_sum_{w}d", f"Sum of {measure} over the last {w} days."), "")
            add(
                _real(
                    f"{slug}_mean_{w}d",
                    f"Mean {measure} per event over the last {w} days (NULL without events).",
                    nullable=True,
                ),
                "",
            )
    for short, long in _pairs(spec.windows):
        add(
            _real(
                f"events_trend_{short}d_{long}d",
                f"Smoothed ratio of the {short}-day event rate to the {long}-day rate "
                "(1 = steady, <1 = decaying).",
            ),
            # (s * L/S + 1) / (l + 1) written (s * L + S) / (S * (l + 1)): integers above one
            # division, rounded once and alike by every engine (L/S as a decimal literal is
            # exact in DuckDB but a rounded DOUBLE in Spark, which the leakage check catches).
            f"CAST(coalesce(a.events_{short}d, 0) * {long} + {short} AS DOUBLE) "
            f"/ ({short} * (coalesce(a.events_{long}d, 0) + 1))",
        )
    for half_life in EWM_HALF_LIVES:
        add(
            _real(
                f"events_ewm_{half_life}d",
                f"Exponentially weighted events per day over the last {spec.windows[-1]} days, "
                f"half-life {half_life} days.",
            ),
            f"CAST(coalesce(a.weighted_{half_life}, 0) / 1000.0 "
            f"/ {_weight_sum(half_life, spec.windows[-1])!r} AS DOUBLE)",
        )
    add(
        _real(
            "lifetime_events_per_day",
            "Events per day since the customer's first recorded event: their usual level.",
        ),
        "CAST(coalesce(l.lifetime_events / greatest(l.first_age, 1), 0) AS DOUBLE)",
    )
    return found


def _weight_sum(half_life: int, days: int) -> float:
    """Sum of the per-mille-rounded EWM weights over days 1..``days`` (so a steady one event a
    day gives a rate of exactly 1)."""
    return round(
        sum(round(1000 * 0.5 ** (age / half_life)) for age in range(1, days + 1)) / 1000, 3
    )


def _profile_features(spec: EventFeatureSpec, taken: set[str]) -> list[tuple[str, Feature]]:
    """(customers column, feature): a profile column keeps its name unless a generated feature
    has it, then it becomes ``profile_<name>``."""
    found = []
    for column, kind, sql_type in spec.profile:
        name = column
        while name in taken:
            name = f"profile_{name}"
        taken.add(name)
        found.append(
            (
                column,
                Feature(
                    name,
                    sql_type,
                    kind,  # type: ignore[arg-type]
                    f"Profile column {column!r} of the customers table ({kind}).",
                    nullable=True,
                ),
            )
        )
    return found


def _generic_kept(spec: EventFeatureSpec) -> list[_Generated]:
    """The generated features the model uses: all of them, or with the subscription family
    only those that family does not already compute (same name or same meaning)."""
    generated = _generated(spec)
    if not spec.subscription_family:
        return generated
    covered = set(SUBSCRIPTION_NAMES) | _subscription_equivalents(spec)
    return [g for g in generated if g.feature.name not in covered]


_SUBSCRIPTION_COUNTS = {
    "login": ("logins_30d",),
    "page_view": ("page_views_30d",),
    "feature_use": ("feature_uses_30d", "feature_uses_90d"),
    "export": ("exports_30d",),
    "share": ("shares_30d",),
}
"""Hand-written per-type counts of the subscription family: the generated ``type_<slug>_<w>d``
with the same window is the same number, so it is not added twice."""


def _subscription_equivalents(spec: EventFeatureSpec) -> set[str]:
    covered = set()
    for slug in spec.event_type_slugs:
        for name in _SUBSCRIPTION_COUNTS.get(slug, ()):
            covered.add(f"type_{slug}_{name.rsplit('_', 1)[1]}")
    return covered


def features(spec: EventFeatureSpec) -> list[Feature]:
    """The model's features for this spec, in the column order :func:`feature_sql` yields."""
    head = list(SUBSCRIPTION_FEATURES) if spec.subscription_family else []
    generic = [g.feature for g in _generic_kept(spec)]
    taken = {f.name for f in head + generic} | {"customer_id", "observation_date", "churned"}
    profile = [feature for _, feature in _profile_features(spec, taken)]
    return head + generic + profile


# --- the SQL ------------------------------------------------------------------------------------

_GENERIC_SQL = """
WITH snap AS (
    SELECT DISTINCT customer_id, CAST(observation_date AS DATE) AS observation_date
    FROM {snapshots}
),
coded AS (
    -- Event types become our integer codes here; 0 is every type outside the vocabulary.
    SELECT e.customer_id, CAST(e.event_time AS DATE) AS day,
        coalesce(v.code, 0) AS code, e.session_id{measure_columns}
    FROM {events} e
    LEFT JOIN {vocabulary} v ON v.event_type = e.event_type
    WHERE e.customer_id IN (SELECT customer_id FROM snap)
      AND e.event_time < (SELECT max(observation_date) FROM snap)
),
sessions AS (
    -- One row per customer, day and session first: a session then counts once per day by
    -- being a group, one hash aggregate less than count(DISTINCT session_id).
    SELECT customer_id, day{session_key}, count(*) AS n_events{session_columns}
    FROM coded
    GROUP BY customer_id, day{session_key}
),
daily AS (
    -- One row per customer and active day: the windows below sum days, not raw events.
    SELECT customer_id, day, CAST(sum(n_events) AS BIGINT) AS n_events,
        {sessions} AS n_sessions{daily_columns}
    FROM sessions
    GROUP BY customer_id, day
),
aged AS (
    -- Only the longest window's days: a join to every earlier day grows with the history
    -- (snapshots x active days), and the whole-history figures come from `lifetime`.
    SELECT s.customer_id, s.observation_date, d.n_events, d.n_sessions{aged_columns},
        date_diff('day', d.day, s.observation_date) AS age
    FROM snap s
    JOIN daily d ON d.customer_id = s.customer_id AND d.day < s.observation_date
        AND d.day >= s.observation_date - {horizon}
),
activity AS (
    SELECT customer_id, observation_date{window_columns}
    FROM aged
    GROUP BY customer_id, observation_date
){lifetime}
SELECT s.customer_id, s.observation_date{select_columns}
FROM snap s
LEFT JOIN activity a
    ON a.customer_id = s.customer_id AND a.observation_date = s.observation_date{lifetime_join}
LEFT JOIN {customers} c ON c.customer_id = s.customer_id
    AND (c.signup_date IS NULL OR c.signup_date < s.observation_date)
"""

_LIFETIME_SQL = """,
timeline AS (
    -- Snapshot rows and active days of a customer in one sequence, a snapshot before an active
    -- day of the same date: running figures read at a snapshot row cover exactly the days
    -- strictly before it (an as-of join in plain window SQL, sorted once, not a range join).
    SELECT customer_id, observation_date AS day, 0 AS is_day, observation_date, 0 AS n_events
    FROM snap
    UNION ALL
    SELECT customer_id, day, 1 AS is_day, NULL AS observation_date, n_events
    FROM daily
),
history AS (
    -- One running frame for all three (one sort): where a day precedes the row, the running
    -- min is the customer's first day.
    SELECT customer_id, observation_date, is_day,
        max(CASE WHEN is_day = 1 THEN day END) OVER running AS last_day,
        sum(n_events) OVER running AS running_events,
        min(CASE WHEN is_day = 1 THEN day END) OVER running AS first_day
    FROM timeline
    WINDOW running AS (PARTITION BY customer_id ORDER BY day, is_day
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
lifetime AS (
    -- NULL for a customer with no day before T, as an aggregate over no rows would be.
    SELECT customer_id, observation_date,
        date_diff('day', last_day, observation_date) AS recency,
        CASE WHEN last_day IS NOT NULL THEN date_diff('day', first_day, observation_date) END
            AS first_age,
        CASE WHEN last_day IS NOT NULL THEN running_events END AS lifetime_events
    FROM history
    WHERE is_day = 0
)"""

_LIFETIME_JOIN = """
LEFT JOIN lifetime l ON l.customer_id = s.customer_id AND l.observation_date = s.observation_date"""


def _in_window(w: int, value: str) -> str:
    return f"sum(CASE WHEN age <= {w} THEN {value} ELSE 0 END)"


def _generic_sql(spec: EventFeatureSpec, sources: SourceTables) -> str:
    """The SELECT of the generated family alone (keys first)."""
    codes = range(1, len(spec.event_types) + 1)
    measures = list(zip(spec.measures, _measure_slugs(spec), strict=True))
    measure_columns = "".join(
        f", e.{quote_identifier(measure)} AS m_{i}" for i, measure in enumerate(spec.measures)
    )
    # Per session (the first grouping), then summed per day with the same names.
    per_session = [
        f"sum(CASE WHEN code = {code} THEN 1 ELSE 0 END) AS n_type_{code}" for code in codes
    ]
    if spec.other_types:
        per_session.append("sum(CASE WHEN code = 0 THEN 1 ELSE 0 END) AS n_type_0")
    for i, _ in enumerate(measures):
        # Integer thousandths: float sums would depend on the order threads add rows in.
        per_session.append(f"sum(CAST(round(m_{i} * 1000) AS BIGINT)) AS m_{i}_milli")
        per_session.append(f"count(m_{i}) AS m_{i}_n")
    daily_names = [column.rsplit(" AS ", 1)[1] for column in per_session]
    # Counts go back to BIGINT (the one-step sums' type); measure thousandths keep the wide
    # type their sum has (HUGEINT on DuckDB): measures up to the staging bound overflow BIGINT.
    daily = [
        f"sum({name}) AS {name}"
        if name.endswith("_milli")
        else f"CAST(sum({name}) AS BIGINT) AS {name}"
        for name in daily_names
    ]
    horizon = spec.windows[-1]
    windows: list[str] = []
    for w in spec.windows:
        windows.append(f"{_in_window(w, 'n_events')} AS events_{w}d")
        windows.append(f"{_in_window(w, '1')} AS active_days_{w}d")
        windows.append(f"{_in_window(w, 'n_sessions')} AS sessions_{w}d")
        for code in codes:
            windows.append(f"{_in_window(w, f'n_type_{code}')} AS type_{code}_{w}d")
        if spec.other_types:
            windows.append(f"{_in_window(w, 'n_type_0')} AS type_0_{w}d")
        for i, _ in enumerate(measures):
            windows.append(f"{_in_window(w, f'm_{i}_milli')} AS m_{i}_milli_{w}d")
            windows.append(f"{_in_window(w, f'm_{i}_n')} AS m_{i}_n_{w}d")
    for half_life in EWM_HALF_LIVES:
        # Integer weights (per mille) keep the weighted sums exact, hence order-independent.
        weight = f"CAST(round(1000 * pow(0.5, age / {float(half_life)!r})) AS BIGINT)"
        windows.append(f"{_in_window(horizon, f'n_events * {weight}')} AS weighted_{half_life}")

    expressions: dict[str, str] = {}
    for w in spec.windows:
        for name in (f"events_{w}d", f"active_days_{w}d", f"sessions_{w}d"):
            expressions[name] = f"CAST(coalesce(a.{name}, 0) AS INTEGER)"
        for code, slug in zip(codes, spec.event_type_slugs, strict=True):
            expressions[f"type_{slug}_{w}d"] = f"CAST(coalesce(a.type_{code}_{w}d, 0) AS INTEGER)"
        expressions[f"type_{OTHER_SLUG}_{w}d"] = f"CAST(coalesce(a.type_0_{w}d, 0) AS INTEGER)"
        for i, (_, slug) in enumerate(measures):
            expressions[f"{slug}_sum_{w}d"] = (
                f"CAST(coalesce(a.m_{i}_milli_{w}d, 0) / 1000.0 AS DOUBLE)"
            )
            expressions[f"{slug}_mean_{w}d"] = (
                f"CAST(a.m_{i}_milli_{w}d / 1000.0 / nullif(a.m_{i}_n_{w}d, 0) AS DOUBLE)"
            )
    selected = []
    kept = _generic_kept(spec)
    lifetime = any(generated.lifetime for generated in kept)
    for generated in kept:
        name = generated.feature.name
        expression = generated.expression or expressions[name]
        selected.append(f"{expression} AS {quote_identifier(name)}")
    head_taken = {g.feature.name for g in _generic_kept(spec)} | {
        "customer_id",
        "observation_date",
        "churned",
    }
    if spec.subscription_family:
        head_taken |= set(SUBSCRIPTION_NAMES)
    for column, feature in _profile_features(spec, head_taken):
        selected.append(
            f"CAST(c.{quote_identifier(column)} AS {feature.sql_type}) "
            f"AS {quote_identifier(feature.name)}"
        )
    return _GENERIC_SQL.format(
        snapshots=sources.snapshots,
        events=sources.events,
        vocabulary=sources.vocabulary,
        customers=sources.customers,
        measure_columns=measure_columns,
        # Each non-NULL session of the day is one group of `sessions`.
        sessions="count(session_id)" if spec.has_sessions else "0",
        # A log without sessions groups by day alone (its session features are not emitted).
        session_key=", session_id" if spec.has_sessions else "",
        session_columns="".join(f",\n        {column}" for column in per_session),
        daily_columns="".join(f",\n        {column}" for column in daily),
        aged_columns="".join(f", d.{name}" for name in daily_names),
        horizon=horizon,
        window_columns="".join(f",\n        {column}" for column in windows),
        lifetime=_LIFETIME_SQL if lifetime else "",
        lifetime_join=_LIFETIME_JOIN if lifetime else "",
        select_columns="".join(f",\n    {column}" for column in selected),
    )


def feature_sql(spec: EventFeatureSpec, sources: SourceTables | None = None) -> str:
    """The SELECT yielding ``customer_id, observation_date`` + :func:`features` ``(spec)``."""
    sources = sources or SourceTables()
    generic = _generic_sql(spec, sources)
    if not spec.subscription_family:
        return generic
    extra = [quote_identifier(g.feature.name) for g in _generic_kept(spec)]
    extra_columns = "".join(f", g.{name}" for name in extra)
    return (
        f"SELECT h.*{extra_columns}\nFROM ({subscription_sql(sources)}) h\n"
        f"JOIN ({generic}) g ON g.customer_id = h.customer_id "
        "AND g.observation_date = h.observation_date"
    )
