"""A flat customer table's snapshots, features and labels: its own columns, observed once.

Staging (:mod:`churn.ingest.flat`) decided what each column is and recorded it in
``flat_columns``; everything here follows that table, so the features, training and the model
card's schema cannot disagree about which columns are features.
"""

from __future__ import annotations

import duckdb

from churn.features.definition import Feature
from churn.ingest.flat import COLUMNS_TABLE, InferredColumn, describe
from churn.sql import quote_identifier


def flat_features(con: duckdb.DuckDBPyConnection) -> list[Feature]:
    """The model features of a flat source, from ``flat_columns`` in table order."""
    rows = con.execute(
        f"SELECT source_column, name, role, kind, sql_type, text_numbers, reason "
        f"FROM {COLUMNS_TABLE} WHERE role = 'feature' ORDER BY position"
    ).fetchall()
    return [
        Feature(
            name,
            sql_type,
            kind,
            describe(InferredColumn(src, name, role, kind, sql_type, tn, why)),
            nullable=True,
        )
        for src, name, role, kind, sql_type, tn, why in rows
    ]


def snapshots_sql() -> str:
    """Every staged customer at its observation date, for the dates in ``[?, ?)``."""
    return (
        "SELECT customer_id, observation_date FROM stg_customers "
        "WHERE observation_date >= CAST(? AS DATE) AND observation_date < CAST(? AS DATE)"
    )


def features_sql(features: list[Feature], snapshots: str) -> str:
    """The staged columns of the snapshot rows: a flat table's features are its own columns."""
    selected = ", ".join(f"c.{quote_identifier(f.name)}" for f in features)
    return (
        f"SELECT s.customer_id, s.observation_date{', ' if selected else ''}{selected} "
        f"FROM {snapshots} s JOIN stg_customers c USING (customer_id, observation_date)"
    )


def labels_sql() -> str:
    """The label column, already known for every row (no horizon to mature)."""
    return (
        "SELECT s.customer_id, s.observation_date, c.churned, CAST(NULL AS VARCHAR) AS churn_type, "
        "CAST(s.observation_date AS DATE) AS label_window_end "
        "FROM customer_snapshots s JOIN stg_customers c USING (customer_id, observation_date) "
        "WHERE s.observation_date >= $start AND s.observation_date < $end"
    )
