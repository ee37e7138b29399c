"""The newest scores as files a CRM can take: Parquet and CSV under ``$CHURN_HOME/exports/``.

Two names per format: a stable one (``customer_scores_latest.*``) that an import job can point
at forever, and a dated copy (``customer_scores_2026-01-01.*``) for audit and for comparing
months. Every file is written next to its target under a temporary name and moved into place
with ``os.replace``, so a reader never sees half a file: it gets the previous export or the new
one. The rows are read with a bound date and written by pyarrow, so no path or value is ever
spliced into SQL.

Beside them, ``customer_scores_unscored_<date>.csv`` lists the source's customers that got no
score that month, with the reason (:mod:`churn.scoring.unscored`): written in the same pass, so
a list and its gaps always describe the same run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:
    import pyarrow as pa

STEM = "customer_scores"


@dataclass(frozen=True)
class Export:
    observation_date: date
    rows: int
    files: dict[str, Path]
    """``latest_parquet``, ``latest_csv``, ``dated_parquet``, ``dated_csv``, and
    ``unscored_csv`` when the unscored customers were given."""
    unscored_rows: int = 0


def export_scores(
    con: duckdb.DuckDBPyConnection,
    folder: Path,
    observation_date: date,
    table: str = STEM,
    unscored: pa.Table | None = None,
) -> Export:
    """Write ``observation_date``'s rows of ``table``, riskiest first, to ``folder``, and the
    ``unscored`` customers of that date (:func:`churn.scoring.unscored.unscored`) when given."""
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    quoted = '"' + table.replace('"', '""') + '"'
    rows = con.sql(
        f"SELECT * FROM {quoted} WHERE observation_date = $day "
        "ORDER BY churn_probability DESC, customer_id",
        params={"day": observation_date},
    ).to_arrow_table()
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "latest_parquet": folder / f"{STEM}_latest.parquet",
        "latest_csv": folder / f"{STEM}_latest.csv",
        "dated_parquet": folder / f"{STEM}_{observation_date.isoformat()}.parquet",
        "dated_csv": folder / f"{STEM}_{observation_date.isoformat()}.csv",
    }
    contents = dict.fromkeys(files, rows)
    if unscored is not None:
        files["unscored_csv"] = folder / f"{STEM}_unscored_{observation_date.isoformat()}.csv"
        contents["unscored_csv"] = unscored
    for name, path in files.items():
        data = contents[name]
        if name.endswith("parquet"):
            _atomic(path, lambda tmp, data=data: pq.write_table(data, tmp))
        else:
            _atomic(path, lambda tmp, data=data: pa_csv.write_csv(data, tmp))
    return Export(
        observation_date,
        rows.num_rows,
        files,
        unscored.num_rows if unscored is not None else 0,
    )


def _atomic(path: Path, write) -> None:
    """``write(temporary path)`` then rename over ``path`` (same folder, so same filesystem)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(str(temporary))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
