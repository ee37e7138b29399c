"""A small, real training set without Dagster: generator -> landing -> staging -> features.

Unit tests of the modelling code need real features (the real SQL, real categories, real label
rates) but not the orchestrator: this runs the same library functions the assets call, on an
in-memory DuckDB, in a few seconds.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pandas as pd

from churn.features import SourceTables, feature_sql
from churn.features.labels import data_end, labels_sql
from churn.features.snapshots import active_customers_sql
from churn.ingest.landing import find_source_file, land_file
from churn.ingest.schema import RAW_TABLES
from churn.ingest.staging import stage_table
from churn.synthetic import GeneratorConfig, generate, observation_dates

SMALL = GeneratorConfig(customers=1_200, months=8, seed=3, start_date=date(2025, 1, 1))
HORIZON_DAYS = 30


def training_frame(folder: Path, config: GeneratorConfig = SMALL) -> pd.DataFrame:
    """Matured feature rows with their ``churned`` label, ordered by date and customer."""
    generate(config, folder / "raw", folder / "truth")
    dates = observation_dates(config)
    first, end = dates[0], date.fromordinal(dates[-1].toordinal() + 1)
    con = duckdb.connect()
    try:
        for table in RAW_TABLES:
            land_file(con, find_source_file(folder / "raw", table), table, replace=True)
        for table in RAW_TABLES:
            stage_table(con, table)
        con.execute(f"CREATE TABLE customer_snapshots AS {active_customers_sql()}", [first, end])
        con.execute(f"CREATE TABLE customer_features AS {feature_sql(SourceTables())}")
        con.execute(
            f"CREATE TABLE churn_labels AS {labels_sql()}",
            {"horizon": HORIZON_DAYS, "data_end": data_end(con), "start": first, "end": end},
        )
        return con.sql(
            """
            SELECT f.*, CAST(l.churned AS INTEGER) AS churned
            FROM customer_features f JOIN churn_labels l USING (customer_id, observation_date)
            WHERE l.churned IS NOT NULL
            ORDER BY observation_date, customer_id
            """
        ).df()
    finally:
        con.close()
