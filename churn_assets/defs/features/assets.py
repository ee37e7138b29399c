"""[features] Monthly snapshots of active customers, their point-in-time features and labels.

The three snapshot assets share the monthly observation partitions and a single-run backfill
policy: a range of months is computed by one SQL statement per asset (DuckDB is faster on one
large query than on many small ones) and replaced in one transaction, so a killed run never
leaves a half-written month behind.
"""

import dagster as dg

from churn.features import (
    FEATURE_NAMES,
    FEATURES,
    KEY_COLUMNS,
    Feature,
    SourceTables,
    feature_sql,
    flat,
)
from churn.features.labels import data_end, labels_sql
from churn.features.leakage import leakage_differences
from churn.features.snapshots import active_customers_sql
from churn.ingest.flat import inferred_columns
from churn.ingest.sources import active_source
from churn.settings import load_settings
from churn.warehouse import transaction
from churn_assets.metadata import markdown_table, table_metadata
from churn_assets.partitions import SINGLE_RUN, observation_partitions
from churn_assets.resources import WAREHOUSE_POOL, EngineResource, WarehouseResource

PARTITIONS = observation_partitions(load_settings())

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
    window = context.partition_time_window
    return window.start.date().isoformat(), window.end.date().isoformat()


def _in_window(start: str, end: str) -> str:
    return f"observation_date >= DATE '{start}' AND observation_date < DATE '{end}'"


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
    deps=["stg_customers", "stg_cancellations"],
    description="One row per customer active at each monthly observation date.",
    **_partitioned_spec_kwargs(),
)
def customer_snapshots(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, engine: EngineResource
):
    start, end = _window(context)
    compute = engine.engine()
    with warehouse.connect(context) as con:
        compute.compute(
            con,
            "_new_snapshots",
            _snapshot_sql(con),
            [start, end],
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


def _is_flat(con) -> bool:
    source, _ = active_source(con)
    return source is not None and source.is_flat


def _snapshot_sql(con) -> str:
    """Who is observed in ``[?, ?)``: active customers, or a flat table's every customer."""
    return flat.snapshots_sql() if _is_flat(con) else active_customers_sql()


def model_features(con) -> list[Feature]:
    """The features of the source the raw layer holds: the event schema's declared ones, or
    the ones a flat table's staging inferred (``flat_columns``)."""
    return flat.flat_features(con) if _is_flat(con) else list(FEATURES)


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
    description="Point-in-time features (usage, billing, support, profile) per snapshot row, "
    "computed by the SQL in churn.features that the scoring service also runs.",
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
        is_flat = _is_flat(con)
        declared = model_features(con)
        if is_flat:
            sql = flat.features_sql(declared, "_window_snapshots")
            # The table's columns follow the source: a new flat table must not inherit old ones.
            if _columns(con, "customer_features") != [*KEY_COLUMNS, *(f.name for f in declared)]:
                con.execute("DROP TABLE IF EXISTS customer_features")
        else:
            sql = feature_sql(SourceTables(snapshots="_window_snapshots"))
            if _columns(con, "customer_features") not in ([], [*KEY_COLUMNS, *FEATURE_NAMES]):
                con.execute("DROP TABLE IF EXISTS customer_features")
        compute.compute(con, "_new_features", sql, table="customer_features", window=(start, end))
        _replace_window(con, "customer_features", "_new_features", start, end)
        features = _rows_per_date(con, "customer_features", start, end)
        descriptions = KEY_DESCRIPTIONS | {f.name: f.description for f in declared}
        metadata = table_metadata(
            con, "customer_features", descriptions, where=_in_window(start, end)
        )
        checks = list(
            _feature_checks(con, start, end, features, config, declared)
            if not is_flat
            else _flat_feature_checks(con, start, end, features, declared)
        )
    yield dg.MaterializeResult(
        metadata=metadata
        | {
            "feature_count": len(declared),
            "feature_source": "inferred from the flat customer table (flat_columns)"
            if is_flat
            else "declared in churn.features (point-in-time SQL over the event tables)",
            "rows_per_date": dg.MetadataValue.md(_per_date_table(features)),
            "engine": compute.name,
        }
    )
    yield from checks


def _columns(con, table: str) -> list[str]:
    from churn.warehouse import table_exists

    if not table_exists(con, table):
        return []
    return [row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()]


def _flat_feature_checks(con, start: str, end: str, features: dict[str, int], declared):
    """The same three checks, meaningful for a flat table: one row per staged customer, no
    feature that is entirely missing, and no identifier, label or time column among them."""
    staged = dict(
        con.execute(
            f"SELECT CAST(observation_date AS VARCHAR), count(*) FROM ({flat.snapshots_sql()}) "
            "GROUP BY ALL",
            [start, end],
        ).fetchall()
    )
    mismatched = {d: (features.get(d, 0), n) for d, n in staged.items() if features.get(d, 0) != n}
    yield dg.AssetCheckResult(
        check_name="rows_match_active_customers",
        passed=not mismatched and bool(staged),
        description=None if not mismatched else f"feature rows vs staged customers: {mismatched}",
        metadata={"dates_checked": len(staged), "mismatched_dates": len(mismatched)},
    )
    empty = [
        f.name
        for f in declared
        if con.execute(
            f'SELECT count("{f.name}") FROM customer_features WHERE {_in_window(start, end)}'
        ).fetchone()[0]
        == 0
    ]
    yield dg.AssetCheckResult(
        check_name="required_features_present",
        passed=bool(declared) and not empty,
        description=f"features with no value at all: {empty}"
        if empty
        else (None if declared else "type inference kept no feature"),
        metadata={"features_checked": len(declared), "features_all_null": len(empty)},
    )
    roles = {c.name: c.role for c in inferred_columns(con)}
    leaking = [f.name for f in declared if roles.get(f.name) not in ("feature",)]
    yield dg.AssetCheckResult(
        check_name="no_future_leakage",
        passed=not leaking,
        description="flat table: no event history to cut; checked instead that no id, label or "
        "time column is a feature" + (f" (found: {leaking})" if leaking else ""),
        metadata={"features_checked": len(declared), "history_cut": False},
    )


def _spread(items: list[str], count: int) -> list[str]:
    """Up to ``count`` items evenly spread from first to last."""
    if len(items) <= count:
        return items
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]


def _feature_checks(
    con,
    start: str,
    end: str,
    features: dict[str, int],
    config: FeatureCheckConfig,
    declared=FEATURES,
):
    active = dict(
        con.execute(
            f"SELECT CAST(observation_date AS VARCHAR), count(*) FROM ({active_customers_sql()}) "
            "GROUP BY ALL",
            [start, end],
        ).fetchall()
    )
    mismatched = {d: (features.get(d, 0), n) for d, n in active.items() if features.get(d, 0) != n}
    yield dg.AssetCheckResult(
        check_name="rows_match_active_customers",
        passed=not mismatched,
        description=None if not mismatched else f"feature rows vs active customers: {mismatched}",
        metadata={"dates_checked": len(active), "mismatched_dates": len(mismatched)},
    )
    required = [f.name for f in declared if not f.nullable]
    null_counts = con.execute(
        "SELECT "
        + ", ".join(f'count(*) FILTER (WHERE "{name}" IS NULL)' for name in required)
        + f" FROM customer_features WHERE {_in_window(start, end)}"
    ).fetchone()
    nulls = {name: count for name, count in zip(required, null_counts, strict=True) if count}
    yield dg.AssetCheckResult(
        check_name="required_features_present",
        passed=not nulls,
        description=None if not nulls else f"NULLs in required features: {nulls}",
        metadata={"features_checked": len(required), "features_with_nulls": len(nulls)},
    )
    sample = config.leakage_sample_size
    checked = _spread(sorted(features), max(config.leakage_dates, 2))
    differing = {d: leakage_differences(con, d, sample_size=sample) for d in checked}
    leaking = {d: n for d, n in differing.items() if n}
    yield dg.AssetCheckResult(
        check_name="no_future_leakage",
        passed=not leaking,
        description=None
        if not leaking
        else f"features changed when future rows were removed (rows per date): {leaking}",
        metadata={"dates_checked": ", ".join(differing), "rows_sampled_per_date": sample},
    )


@dg.asset(
    deps=["customer_snapshots", "stg_cancellations"],
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
    horizon = load_settings().horizon_days
    with warehouse.connect(context) as con:
        end_of_data = data_end(con)
        if _is_flat(con):  # the label column is known for every row: nothing to mature
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE _new_labels AS {flat.labels_sql()}",
                {"start": start, "end": end},
            )
        else:
            compute.compute(
                con,
                "_new_labels",
                labels_sql(),
                {"horizon": horizon, "data_end": end_of_data, "start": start, "end": end},
                table="churn_labels",
                window=(start, end),
            )
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
            "horizon_days": horizon,
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
