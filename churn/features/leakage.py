"""The leakage check: features recomputed with the future removed must not change.

Point-in-time correctness is a property of the feature SQL, so it is tested on the real tables: a
sample of one snapshot is recomputed from sources cut at its observation date and compared with
what ``customer_features`` stored. Any difference means a feature saw a row it should not have.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date

import duckdb

from churn.features.definition import FEATURE_NAMES, KEY_COLUMNS, SourceTables, feature_sql
from churn.sql import quote_identifier, quote_literal


def leakage_differences(
    con: duckdb.DuckDBPyConnection,
    observation_date: str,
    *,
    features_table: str = "customer_features",
    sample_size: int = 500,
    sources: SourceTables | None = None,
    sql_for: Callable[[SourceTables], str] = feature_sql,
    feature_names: Sequence[str] = FEATURE_NAMES,
    vocabulary: str | None = None,
) -> int:
    """Recompute a sample of one snapshot's features with every source row dated at or after
    the observation date removed, and count the rows whose features differ from the stored ones.

    Zero means the stored features could not have seen the future. The cut sources are temp
    views, so the check never copies the warehouse; the sample and its recomputed features are
    materialized once and compared both ways.
    """
    sources = sources or SourceTables()
    day = date.fromisoformat(str(observation_date)[:10])  # only a date's ISO text reaches SQL
    date_literal = f"DATE {quote_literal(day.isoformat())}"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _leak_snapshots AS
        SELECT customer_id, observation_date FROM {features_table}
        WHERE observation_date = {date_literal}
        ORDER BY hash(customer_id) LIMIT {int(sample_size)}
        """
    )
    cuts = {
        "customers": ("signup_date", sources.customers),
        "events": ("event_time", sources.events),
        "payments": ("payment_date", sources.payments),
        "tickets": ("created_at", sources.tickets),
    }
    for name, (time_column, table) in cuts.items():
        # A customer without a signup date (an event log's) has a profile but no time to cut.
        kept = f"{time_column} IS NULL OR " if name == "customers" else ""
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW _leak_{name} AS SELECT * FROM {table} "
            f"WHERE ({kept}{time_column} < {date_literal}) "
            "AND customer_id IN (SELECT customer_id FROM _leak_snapshots)"
        )
    cut = sql_for(
        SourceTables(
            snapshots="_leak_snapshots",
            customers="_leak_customers",
            events="_leak_events",
            payments="_leak_payments",
            tickets="_leak_tickets",
            vocabulary=vocabulary or sources.vocabulary,
        )
    )
    columns = ", ".join(quote_identifier(c) for c in (*KEY_COLUMNS, *feature_names))
    con.execute(f"CREATE OR REPLACE TEMP TABLE _leak_recomputed AS SELECT {columns} FROM ({cut})")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _leak_stored AS SELECT {columns} FROM {features_table}
        WHERE observation_date = {date_literal}
          AND customer_id IN (SELECT customer_id FROM _leak_snapshots)
        """
    )
    differing = con.execute(
        """
        SELECT count(*) FROM (
            (SELECT * FROM _leak_recomputed EXCEPT SELECT * FROM _leak_stored)
            UNION ALL
            (SELECT * FROM _leak_stored EXCEPT SELECT * FROM _leak_recomputed)
        )
        """
    ).fetchone()[0]
    for name in cuts:
        con.execute(f"DROP VIEW IF EXISTS _leak_{name}")
    for name in ("snapshots", "recomputed", "stored"):
        con.execute(f"DROP TABLE IF EXISTS _leak_{name}")
    return int(differing)
