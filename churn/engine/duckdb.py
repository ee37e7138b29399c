"""The default engine: the query runs in the warehouse connection itself."""

from __future__ import annotations

import duckdb

from churn.engine import Params
from churn.sql import quote_identifier


class DuckDBEngine:
    """One DuckDB file, one machine: the query becomes a temp table directly."""

    name = "duckdb"

    def compute(
        self,
        con: duckdb.DuckDBPyConnection,
        into: str,
        sql: str,
        params: Params = None,
        *,
        table: str,
        window: tuple[str, str] | None = None,
        persist: bool = False,
    ) -> None:
        kind = "TABLE" if persist else "TEMP TABLE"
        con.execute(f"CREATE OR REPLACE {kind} {quote_identifier(into)} AS {sql}", params)
