"""User data never becomes SQL: hostile column and file names through every path that builds SQL
from a name (issue 17, item 1).

Property-based: hypothesis draws names made of quotes, brackets, backslashes, semicolons, glob
characters and SQL fragments, and each path runs for real against a DuckDB file: a flat table
landed and staged (every feature survives, the rejects' reasons name the column exactly), an
events file renamed onto the contract, and incoming files whose names carry the same junk. A
sentinel table stands in for ``raw_events``: an injected ``DROP TABLE`` would remove it.
"""

from __future__ import annotations

import csv
import tempfile
from datetime import date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from churn.features.flat import features_sql, flat_features
from churn.ingest.flat import inferred_columns, stage_flat
from churn.ingest.incoming import LANDED_TABLE, append_incoming, validate_file
from churn.ingest.landing import SourceFileError, create_empty_raw, land_file, land_flat
from churn.ingest.schema import CUSTOMERS, EVENTS
from churn.sources.config import FlatSource

FRAGMENTS = [
    "Customer's Age",
    'x"; DROP TABLE sentinel; --',
    "'); DROP TABLE sentinel; --",
    "a]b[c",
    "back\\slash\\",
    "semi;colon",
    "${name}",
    "$1 ?",
    "--comment",
    "/* c */",
    "it''s",
    '""',
    "%s",
    "*",
    "?",
    "[x]",
    "ünï ✓",
]
HOSTILE_CHARS = list("aZ '\"[]\\;-_()`.,*?%$:{}/#=|&!")

hostile_name = st.one_of(
    st.sampled_from(FRAGMENTS),
    st.text(alphabet=HOSTILE_CHARS, min_size=1, max_size=12),
    st.builds(lambda a, b: a + b, st.sampled_from(FRAGMENTS), st.text(HOSTILE_CHARS, max_size=6)),
).filter(lambda name: name.strip() == name and name != "")

RESERVED = {"customer_id", "churned", "observation_date", "reject_reason", "reject_rules"}
RESERVED |= {"_loaded_at", "_source_file"}
"""Names staging itself writes next to the user's columns: refused at landing (tested below)."""


def _distinct(names: list[str]) -> bool:
    """Column names DuckDB can tell apart (it compares them case-insensitively)."""
    folded = [name.casefold() for name in names]
    return len(set(folded)) == len(folded) and not RESERVED & set(folded)


SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
ROWS = 24


def _sentinel(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE TABLE sentinel AS SELECT 1 AS still_here")


def _sentinel_intact(con: duckdb.DuckDBPyConnection) -> bool:
    return con.execute("SELECT count(*) FROM sentinel").fetchone()[0] == 1


def _write_flat(path: Path, columns: dict[str, list[str]]) -> Path:
    if path.suffix == ".parquet":
        pq.write_table(pa.table(columns), path)
    else:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
            writer.writerow(list(columns))
            writer.writerows(zip(*columns.values(), strict=True))
    return path


@SETTINGS
@given(
    names=st.lists(hostile_name, min_size=5, max_size=8).filter(_distinct),
    suffix=st.sampled_from([".csv", ".parquet"]),
    with_time=st.booleans(),
)
@example(
    names=["id's", 'label"', "Customer's Age", 'x"; DROP TABLE sentinel; --', "when]"],
    suffix=".csv",
    with_time=True,
)
def test_hostile_column_names_stage_end_to_end_with_every_feature(names, suffix, with_time):
    id_column, label_column, time_column, *feature_columns = names
    numeric = feature_columns[::2]
    columns: dict[str, list[str]] = {
        id_column: [f"c{i}" for i in range(ROWS)],
        label_column: ["yes" if i % 3 == 0 else "no" for i in range(ROWS)],
        time_column: [f"2025-0{1 + i % 3}-15" for i in range(ROWS)],
    }
    for name in feature_columns:
        if name in numeric:
            columns[name] = [f"{i % 5}.5" for i in range(ROWS)]
        else:
            columns[name] = [("red", "green", "blue")[i % 3] for i in range(ROWS)]
    columns[numeric[0]][-1] = "not-a-number"  # the last row is rejected, naming the column
    with tempfile.TemporaryDirectory() as folder:
        path = _write_flat(Path(folder) / f"customers{suffix}", columns)
        source = FlatSource(
            path=path,
            id_column=id_column,
            label_column=label_column,
            positive=("yes",),
            time_column=time_column if with_time else None,
            ignore=() if with_time else (time_column,),
        )
        with duckdb.connect(str(Path(folder) / "warehouse.duckdb")) as con:
            _sentinel(con)
            assert land_flat(con, path) == ROWS
            result, inferred = stage_flat(con, source, date(2025, 6, 1))
            assert _sentinel_intact(con)
            features = [c for c in inferred if c.role == "feature"]
            assert sorted(c.source for c in features) == sorted(feature_columns)
            assert {c.kind for c in features if c.source in numeric} == {"numeric"}
            assert [c.source for c in inferred_columns(con)] == [c.source for c in inferred]
            assert (result.staged_rows, result.rejected_rows) == (ROWS - 1, 1)
            reason = con.execute("SELECT reject_reason FROM stg_customers_rejects").fetchone()[0]
            assert reason == f"invalid_type: {numeric[0]}='not-a-number' is not a number"
            staged = con.execute(
                f"SELECT count(*) FROM ({features_sql(flat_features(con), 'stg_customers')})"
            ).fetchone()[0]
            assert staged == ROWS - 1
            churned = con.execute("SELECT count(*) FILTER (churned) FROM stg_customers")
            assert churned.fetchone()[0] == ROWS // 3


@SETTINGS
@given(names=st.lists(hostile_name, min_size=6, max_size=6).filter(_distinct))
def test_an_events_mapping_with_hostile_names_lands_renamed_onto_the_contract(names):
    renames = dict(zip(EVENTS.column_names, names, strict=True))
    rows = [
        ["e1", "c1", "s1", "2025-03-01 10:00:00", "login", "12.5"],
        ["e2", "c1", "s1", "2025-03-01 10:05:00-05:00", "export", "  "],
    ]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "events.csv"
        _write_flat(path, dict(zip(names, zip(*rows, strict=True), strict=True)))
        with duckdb.connect(str(Path(folder) / "warehouse.duckdb")) as con:
            _sentinel(con)
            create_empty_raw(con, EVENTS)  # typed: the append converts by the shared rule
            assert land_file(con, path, EVENTS, replace=False, renames=renames) == 2
            query = "SELECT event_id, event_time, duration_seconds FROM raw_events ORDER BY 1"
            assert con.execute(query).fetchall() == [
                ("e1", datetime(2025, 3, 1, 10, 0), 12.5),
                ("e2", datetime(2025, 3, 1, 15, 5), None),  # offset -> UTC, blank -> missing
            ]
            assert land_file(con, path, EVENTS, replace=True, renames=renames) == 2
            assert _sentinel_intact(con)
            landed = con.execute(
                "SELECT event_id, event_type, duration_seconds FROM raw_events ORDER BY 1"
            ).fetchall()
            assert landed == [("e1", "login", "12.5"), ("e2", "export", "  ")]  # as arrived


file_part = st.text(
    alphabet=list("aZ09 '\"[]\\;-()`.,*?%$:{}#=|&!"), min_size=1, max_size=20
).filter(lambda s: s.strip() == s)


@SETTINGS
@given(part=file_part)
@example(part="x'\"; DROP TABLE sentinel; --")
@example(part="*")
@example(part="[0-9]?")
def test_incoming_file_names_with_quotes_and_globs_land_only_themselves(part):
    row = "c_new_1,2025-09-03,north,basic,19.0,monthly,card,33,organic"
    header = ",".join(CUSTOMERS.column_names)
    with tempfile.TemporaryDirectory() as folder:
        incoming = Path(folder) / "incoming"
        incoming.mkdir()
        path = incoming / f"customers_{part}.csv"
        path.write_text(f"{header}\n{row}\n")
        # Neighbours a glob in the name would also match (letters not in the drawn alphabet):
        # they must not be read.
        for neighbour in ("customers_0x.csv", "customers_n.csv"):
            (incoming / neighbour).write_text(f"{header}\n{row.replace('c_new_1', 'x')}\n")
        assert validate_file(path) is CUSTOMERS
        with duckdb.connect(str(Path(folder) / "warehouse.duckdb")) as con:
            _sentinel(con)
            create_empty_raw(con, CUSTOMERS)
            assert append_incoming(con, path, Path(folder) / "landed") == ("customers", 1)
            assert _sentinel_intact(con)
            ids = con.execute("SELECT customer_id, _source_file FROM raw_customers").fetchall()
            assert len(ids) == 1 and ids[0][0] == "c_new_1"
            assert ids[0][1].endswith(path.name)
            recorded = con.execute(f"SELECT file_name FROM {LANDED_TABLE}").fetchone()[0]
            assert recorded == path.name


def test_a_flat_column_named_like_a_pipeline_column_is_refused_naming_it(tmp_path: Path):
    path = _write_flat(
        tmp_path / "customers.csv", {"id": ["c1", "c2"], "y": ["1", "0"], "_Loaded_At": ["a", "b"]}
    )
    with duckdb.connect() as con, pytest.raises(SourceFileError) as raised:
        land_flat(con, path)
    assert "'_Loaded_At'" in str(raised.value) and "rename them" in str(raised.value)
