"""[features] Monthly snapshots of active customers, their point-in-time features and labels.

The three snapshot assets share the monthly observation partitions and a single-run backfill
policy: a range of months is computed by one SQL statement per asset (DuckDB is faster on one
large query than on many small ones) and replaced in one transaction, so a killed run never
leaves a half-written month behind.
"""

from datetime import date

import dagster as dg

from churn.features import FEATURES, KEY_COLUMNS, Feature
from churn.sources.base import Source
from churn.sources.registry import resolve
from churn.sql import quote_identifier, quote_literal
from churn.warehouse import transaction
from churn_assets.metadata import markdown_table, table_metadata
from churn_assets.partitions import OBSERVATION_DATES, SINGLE_RUN, partition_window
from churn_assets.resources import WAREHOUSE_POOL, EngineResource, WarehouseResource

PARTITIONS = OBSERVATION_DATES

KEY_DESCRIPTIONS = {
    "customer_id": "Customer observed.",
    "observation_date": "Observation date: features see only data strictly before it.",
}
FEATURE_DESCRIPTIONS = KEY_DESCRIPTIONS | {f.name: f.description for f in FEATURES}
LABEL_DESCRIPTIONS = KEY_DESCRIPTIONS | {
    "churned": "Left within the horizon after the observation date; NULL until it has matured.",
    "churn_type": "voluntary or involuntary, when churned.",
    "label_window_end": "Last day of the label horizon.",
}


def _window(context: dg.AssetExecutionContext) -> tuple[str, str]:
    first, end = partition_window(context)
    return first.isoformat(), end.isoformat()


def _in_window(start: str, end: str) -> str:
    """The partition window as SQL; the keys are parsed as dates first, so only a date's ISO
    text can reach the statement."""
    first, last = (quote_literal(date.fromisoformat(key).isoformat()) for key in (start, end))
    return f"observation_date >= DATE {first} AND observation_date < DATE {last}"


def _rows_per_date(con, table: str, start: str, end: str) -> dict[str, int]:
    rows = con.execute(
        f"SELECT CAST(observation_date AS VARCHAR), count(*) FROM {table} "
        f"WHERE {_in_window(start, end)} GROUP BY ALL ORDER BY 1"
    ).fetchall()
    return dict(rows)


def _replace_window(con, table: str, new_rows: str, start: str, end: str) -> None:
    """Swap the window's rows of ``table`` for the temp table ``new_rows`` atomically.

    The empty table is created before the transaction on purpose: with DuckDB 2.0, a table
    created and bulk-filled (~700k rows) in one transaction scans as empty on the same
    connection afterwards (counts are right, rows are missing), which broke the checks below.
    """
    con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM {new_rows} LIMIT 0")
    with transaction(con):
        con.execute(f"DELETE FROM {table} WHERE {_in_window(start, end)}")
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {new_rows}")
        con.execute(f"DROP TABLE {new_rows}")


def _partitioned_spec_kwargs(group: str = "features") -> dict:
    return {
        "partitions_def": PARTITIONS,
        "backfill_policy": SINGLE_RUN,
        "pool": WAREHOUSE_POOL,
        "group_name": group,
        "kinds": {"duckdb"},
        "owners": ["team:data-engineering"],
    }


@dg.asset(
    deps=["stg_customers", "stg_cancellations", "stg_events"],
    description="One row per customer observed at each monthly observation date: active "
    "(signed up, not cancelled, and for an inactivity definition not already lapsed).",
    **_partitioned_spec_kwargs(),
)
def customer_snapshots(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, engine: EngineResource
):
    start, end = _window(context)
    compute = engine.engine()
    with warehouse.connect(context) as con:
        sql, params = resolve(con).snapshots_query(start, end)
        compute.compute(
            con,
            "_new_snapshots",
            sql,
            params,
            table="customer_snapshots",
            window=(start, end),
        )
        _replace_window(con, "customer_snapshots", "_new_snapshots", start, end)
        per_date = _rows_per_date(con, "customer_snapshots", start, end)
        metadata = table_metadata(
            con, "customer_snapshots", KEY_DESCRIPTIONS, where=_in_window(start, end)
        )
    return dg.MaterializeResult(
        metadata=metadata
        | {
            "active_customers_per_date": dg.MetadataValue.md(_per_date_table(per_date)),
            "engine": compute.name,
        }
    )


def model_features(con) -> list[Feature]:
    """The features of the source the raw layer holds (see :class:`Source`)."""
    return list(resolve(con).features)


def _per_date_table(per_date: dict[str, int]) -> str:
    return markdown_table(["observation_date", "rows"], list(per_date.items()))


FEATURE_CHECKS = [
    dg.AssetCheckSpec(
        "rows_match_active_customers",
        asset="customer_features",
        blocking=True,
        description="Each snapshot has exactly one feature row per active customer.",
    ),
    dg.AssetCheckSpec(
        "required_features_present",
        asset="customer_features",
        blocking=True,
        description="No feature declared non-nullable is NULL.",
    ),
    dg.AssetCheckSpec(
        "no_future_leakage",
        asset="customer_features",
        blocking=True,
        description="Recomputing a sample of each snapshot with all source rows at or after its "
        "observation date removed gives identical features.",
    ),
]


class FeatureCheckConfig(dg.Config):
    leakage_sample_size: int = 300
    """Customers per observation date recomputed by the leakage check."""
    leakage_dates: int = 3
    """Observation dates of the run checked for leakage: the first, the last and ones between.
    A leak in the SQL shows on every date alike, and each check rescans the sources."""


@dg.asset(
    deps=["customer_snapshots", "stg_events", "stg_payments", "stg_tickets"],
    description="Point-in-time features per snapshot row: generated from the event log's own "
    "vocabulary (plus the hand-written usage, billing, support and profile family for the "
    "subscription schema), by the SQL in churn.features that the scoring service also runs.",
    check_specs=FEATURE_CHECKS,
    **_partitioned_spec_kwargs(),
)
def customer_features(
    context: dg.AssetExecutionContext,
    config: FeatureCheckConfig,
    warehouse: WarehouseResource,
    engine: EngineResource,
):
    start, end = _window(context)
    compute = engine.engine()
    with warehouse.connect(context) as con:
        con.execute(
            "CREATE OR REPLACE TEMP VIEW _window_snapshots AS SELECT * FROM customer_snapshots "
            f"WHERE {_in_window(start, end)}"
        )
        source = resolve(con)
        declared = list(source.features)
        # The table's columns follow the source: a new source must not inherit old columns.
        if _columns(con, "customer_features") not in ([], [*KEY_COLUMNS, *source.feature_names]):
            con.execute("DROP TABLE IF EXISTS customer_features")
        sql = source.feature_sql("_window_snapshots")
        compute.compute(con, "_new_features", sql, table="customer_features", window=(start, end))
        _replace_window(con, "customer_features", "_new_features", start, end)
        features = _rows_per_date(con, "customer_features", start, end)
        descriptions = KEY_DESCRIPTIONS | {f.name: f.description for f in declared}
        metadata = table_metadata(
            con, "customer_features", descriptions, where=_in_window(start, end)
        )
        checks = list(_feature_checks(con, source, start, end, features, config))
    extra = {key: dg.MetadataValue.json(value) for key, value in source.feature_metadata().items()}
    yield dg.MaterializeResult(
        metadata=metadata
        | {
            "feature_count": len(declared),
            "feature_source": source.description,
            "rows_per_date": dg.MetadataValue.md(_per_date_table(features)),
            "engine": compute.name,
        }
        | extra
    )
    yield from checks


def _columns(con, table: str) -> list[str]:
    from churn.warehouse import table_exists

    if not table_exists(con, table):
        return []
    return [row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()]


def _spread(items: list[str], count: int) -> list[str]:
    """Up to ``count`` items evenly spread from first to last."""
    if len(items) <= count:
        return items
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]


def _feature_checks(
    con,
    source: Source,
    start: str,
    end: str,
    features: dict[str, int],
    config: FeatureCheckConfig,
):
    """The three checks, for any source: one row per observed customer (and, where the source
    says a window must not be empty, some row); no NULL in a feature declared non-nullable (nor,
    where the source says so, a feature with no value at all); and no future leakage, checked
    the source's way (:meth:`churn.sources.base.Source.leakage`)."""
    sql, params = source.snapshots_query(start, end)
    observed = dict(
        con.execute(
            f"SELECT CAST(observation_date AS VARCHAR), count(*) FROM ({sql}) GROUP BY ALL",
            params,
        ).fetchall()
    )
    mismatched = {
        d: (features.get(d, 0), n) for d, n in observed.items() if features.get(d, 0) != n
    }
    yield dg.AssetCheckResult(
        check_name="rows_match_active_customers",
        passed=not mismatched and (bool(observed) or not source.expects_rows_in_every_window),
        description=None if not mismatched else f"feature rows vs observed customers: {mismatched}",
        metadata={"dates_checked": len(observed), "mismatched_dates": len(mismatched)},
    )
    declared = list(source.features)
    counts = (
        con.execute(
            "SELECT "
            + ", ".join(
                f"count(*) FILTER (WHERE {quote_identifier(f.name)} IS NULL), "
                f"count({quote_identifier(f.name)})"
                for f in declared
            )
            + f" FROM customer_features WHERE {_in_window(start, end)}"
        ).fetchone()
        if declared
        else ()
    )
    nulls = {
        f.name: counts[2 * i] for i, f in enumerate(declared) if not f.nullable and counts[2 * i]
    }
    empty = [
        f.name
        for i, f in enumerate(declared)
        if counts[2 * i + 1] == 0 and source.every_feature_has_values
    ]
    problems = []
    if nulls:
        problems.append(f"NULLs in required features: {nulls}")
    if empty:
        problems.append(f"features with no value at all: {empty}")
    if not declared:
        problems.append("no feature was kept")
    yield dg.AssetCheckResult(
        check_name="required_features_present",
        passed=not problems,
        description="; ".join(problems) or None,
        metadata={
            "features_checked": len(declared),
            "features_with_nulls": len(nulls),
            "features_all_null": len(empty),
        },
    )
    yield _leakage_check(con, source, features, config)


def _leakage_check(con, source: Source, features: dict[str, int], config):
    """The source decides how leakage is checked; the asset only spreads the dates."""
    checked = _spread(sorted(features), max(config.leakage_dates, 2))
    verdict = source.leakage(con, checked, config.leakage_sample_size)
    return dg.AssetCheckResult(
        check_name="no_future_leakage",
        passed=verdict.passed,
        description=verdict.description,
        metadata=verdict.metadata,
    )


@dg.asset(
    deps=["customer_snapshots", "stg_cancellations", "stg_events"],
    description="Whether each snapshot's customer churned within the horizon; NULL for the "
    "newest snapshot(s), whose horizon runs past the data.",
    check_specs=[
        dg.AssetCheckSpec(
            "label_rate_plausible",
            asset="churn_labels",
            description="Matured label rate per month stays within 0.1%–60%.",
        )
    ],
    **_partitioned_spec_kwargs(),
)
def churn_labels(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, engine: EngineResource
):
    start, end = _window(context)
    compute = engine.engine()
    with warehouse.connect(context) as con:
        source = resolve(con)
        end_of_data = source.data_end(con)
        sql, params = source.labels_query(start, end, end_of_data)
        compute.compute(con, "_new_labels", sql, params, table="churn_labels", window=(start, end))
        _replace_window(con, "churn_labels", "_new_labels", start, end)
        rates = con.execute(
            "SELECT CAST(observation_date AS VARCHAR), count(*), count(churned), "
            "avg(CAST(churned AS DOUBLE)) FROM churn_labels "
            f"WHERE {_in_window(start, end)} GROUP BY ALL ORDER BY 1"
        ).fetchall()
        metadata = table_metadata(
            con, "churn_labels", LABEL_DESCRIPTIONS, where=_in_window(start, end)
        )
    table = markdown_table(
        ["observation_date", "rows", "labeled", "label_rate"],
        [(d, n, k, "unmatured" if r is None else f"{r:.2%}") for d, n, k, r in rates],
    )
    implausible = {d: r for d, _, _, r in rates if r is not None and not 0.001 <= r <= 0.6}
    yield dg.MaterializeResult(
        metadata=metadata
        | {
            "horizon_days": source.label_days,
            "churn_definition": dg.MetadataValue.json(source.churn_definition()),
            "data_end": str(end_of_data),
            "label_rate_per_month": dg.MetadataValue.md(table),
            "engine": compute.name,
        }
    )
    yield dg.AssetCheckResult(
        check_name="label_rate_plausible",
        passed=not implausible,
        severity=dg.AssetCheckSeverity.WARN,
        description=None if not implausible else f"implausible label rates: {implausible}",
    )


@dg.asset(
    deps=["customer_features", "churn_labels"],
    description="Features joined to matured labels: every row a model may learn or be tested on.",
    group_name="features",
    pool=WAREHOUSE_POOL,
    backfill_policy=SINGLE_RUN,
    kinds={"duckdb"},
    owners=["team:data-engineering"],
)
def training_set(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    keys = ", ".join(KEY_COLUMNS)
    with warehouse.connect(context) as con, transaction(con):
        descriptions = FEATURE_DESCRIPTIONS | {f.name: f.description for f in model_features(con)}
        con.execute(
            f"""
            CREATE OR REPLACE TABLE training_set AS
            SELECT f.*, CAST(l.churned AS INTEGER) AS churned
            FROM customer_features f JOIN churn_labels l USING ({keys})
            WHERE l.churned IS NOT NULL
            ORDER BY observation_date, customer_id
            """
        )
        per_month = con.execute(
            "SELECT CAST(observation_date AS VARCHAR), count(*), avg(churned) FROM training_set "
            "GROUP BY ALL ORDER BY 1"
        ).fetchall()
        metadata = table_metadata(
            con,
            "training_set",
            descriptions | {"churned": "1 if the customer left within the horizon."},
        )
    return dg.MaterializeResult(
        metadata=metadata
        | {
            "label_rate": sum(n * r for _, n, r in per_month)
            / max(sum(n for _, n, _ in per_month), 1),
            "label_rate_per_month": dg.MetadataValue.md(
                markdown_table(
                    ["observation_date", "rows", "label_rate"],
                    [(d, n, f"{r:.2%}") for d, n, r in per_month],
                )
            ),
        }
    )
