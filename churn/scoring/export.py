"""The newest scores as files a CRM can take: Parquet and CSV under ``$CHURN_HOME/exports/``.

Two names per format: a stable one (``customer_scores_latest.*``) that an import job can point
at forever, and a dated copy (``customer_scores_2026-01-01.*``) for audit and for comparing
months. Beside them, ``customer_scores_unscored_<date>.csv`` lists the source's customers that
got no score that month, with the reason (:mod:`churn.scoring.unscored`).

The files are one **set**: an import job must never find a new ``latest.parquet`` beside an old
``latest.csv``. So every file is first written in full under a temporary name next to its target
(:func:`stage_export`), and only when all of them are written are they renamed into place
together (:meth:`StagedExport.publish`). A write that fails (a full disk, a directory where a
file should go) removes every temporary file and leaves the previous set untouched; a rename
that fails puts back the files already renamed (each old file is kept under a hard link until
the set is in place). A disk that fills is reported as such, naming the file and the device
(:class:`churn.diskspace.DiskFullError`).

:func:`export_then_replace` is how ``customer_scores`` uses it: the set is written from the rows
the table *will* hold, then the table is replaced, then the files are renamed, so a failed
export leaves the previous table and the previous files, and a failed replace removes the
written files.

The rows are read with a bound date and written by pyarrow, so no path or value is ever spliced
into SQL; table names are quoted (:func:`churn.sql.quote_identifier`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from churn.diskspace import disk_full, is_disk_full
from churn.sql import quote_identifier

if TYPE_CHECKING:
    import pyarrow as pa

STEM = "customer_scores"
PENDING_VIEW = "_customer_scores_to_export"
"""The temp view of the scores table as it will be once replaced (read by the export)."""


@dataclass(frozen=True)
class Export:
    observation_date: date
    rows: int
    files: dict[str, Path]
    """``latest_parquet``, ``latest_csv``, ``dated_parquet``, ``dated_csv``, and
    ``unscored_csv`` when the unscored customers were given."""
    unscored_rows: int = 0
    unscored: pa.Table | None = field(default=None, compare=False, repr=False)
    """The unscored customers written to ``unscored_csv`` (None when not given)."""


@dataclass
class StagedExport:
    """Every file of a set written under its temporary name, not yet in place."""

    export: Export
    temporaries: dict[str, Path]
    """Same keys as ``export.files``: where each file's new content waits."""

    def publish(self) -> Export:
        """Rename every temporary file over its target. Should a rename fail, the targets
        already replaced get their previous content back (or are removed if they are new), so
        the folder holds the previous set; the temporaries are removed either way."""
        backups: dict[str, Path] = {}
        replaced: list[str] = []
        try:
            for name, target in self.export.files.items():
                backup = _temporary(target, "old")
                _remove([backup])
                try:
                    os.link(target, backup)  # a second name for the old content: no copy
                except FileNotFoundError:
                    continue  # a new file: undone by removing it
                except OSError:
                    continue  # no hard links here: best effort, as a plain rename would be
                backups[name] = backup
            for name, temporary in self.temporaries.items():
                os.replace(temporary, self.export.files[name])
                replaced.append(name)
        except BaseException:
            for name in replaced:
                target = self.export.files[name]
                if name in backups:
                    os.replace(backups.pop(name), target)
                else:
                    target.unlink(missing_ok=True)
            raise
        finally:
            _remove([*self.temporaries.values(), *backups.values()])
        return self.export

    def discard(self) -> None:
        """Remove the temporary files: the previous set stays as it was."""
        _remove(list(self.temporaries.values()))


def stage_export(
    con: duckdb.DuckDBPyConnection,
    folder: Path,
    observation_date: date,
    table: str = STEM,
    unscored: pa.Table | None = None,
) -> StagedExport:
    """Write ``observation_date``'s rows of ``table``, riskiest first, and the ``unscored``
    customers of that date (:func:`churn.scoring.unscored.unscored`) when given, under
    temporary names in ``folder``; nothing is in place until :meth:`StagedExport.publish`.

    Raises :class:`churn.diskspace.DiskFullError` when the disk fills, ``IsADirectoryError``
    when a directory stands where a file of the set goes; either way no temporary file is
    left."""
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    rows = con.sql(
        f"SELECT * FROM {quote_identifier(table)} WHERE observation_date = $day "
        "ORDER BY churn_probability DESC, customer_id",
        params={"day": observation_date},
    ).to_arrow_table()
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
    temporaries: dict[str, Path] = {}
    current = folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, target in files.items():
            current = target
            if target.is_dir():
                raise IsADirectoryError(
                    f"cannot export {name}: {target} is a directory; move it away and re-run"
                )
            temporary = temporaries[name] = _temporary(target, "tmp")
            if name.endswith("parquet"):
                pq.write_table(contents[name], str(temporary))
            else:
                pa_csv.write_csv(contents[name], str(temporary))
    except BaseException as error:
        _remove(list(temporaries.values()))
        if is_disk_full(error):
            raise disk_full(error, current, "the score export") from error
        raise
    export = Export(
        observation_date,
        rows.num_rows,
        files,
        unscored.num_rows if unscored is not None else 0,
        unscored,
    )
    return StagedExport(export, temporaries)


def export_scores(
    con: duckdb.DuckDBPyConnection,
    folder: Path,
    observation_date: date,
    table: str = STEM,
    unscored: pa.Table | None = None,
) -> Export:
    """Write the set (:func:`stage_export`) and put it in place (:meth:`StagedExport.publish`)."""
    return stage_export(con, folder, observation_date, table, unscored).publish()


def export_then_replace(
    con: duckdb.DuckDBPyConnection,
    folder: Path,
    table: str,
    new_rows: str,
    window: str,
    replace: Callable[[], None],
) -> Export | None:
    """Export the newest month of ``table`` as it will be once ``replace()`` has swapped the
    ``window`` (SQL over ``observation_date``, built from dates by the caller) for the temp
    table ``new_rows``; then replace; then publish the files.

    The order is the guarantee: the set is written (from a temp view of the future table) before
    the table changes, so a failed write leaves the previous table and files; a failed
    ``replace()`` removes the written files. None (after replacing) when no month is scored."""
    from churn.scoring.unscored import unscored

    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {quote_identifier(PENDING_VIEW)} AS "
        f"{_future_rows(con, table, new_rows, window)}"
    )
    try:
        newest = con.execute(
            f"SELECT max(observation_date) FROM {quote_identifier(PENDING_VIEW)}"
        ).fetchone()[0]
        staged = None
        if newest is not None:
            missing = unscored(con, newest, PENDING_VIEW)
            staged = stage_export(con, folder, newest, PENDING_VIEW, unscored=missing)
    finally:
        con.execute(f"DROP VIEW IF EXISTS {quote_identifier(PENDING_VIEW)}")
    try:
        replace()
    except BaseException:
        if staged is not None:
            staged.discard()
        raise
    return staged.publish() if staged is not None else None


def _future_rows(con: duckdb.DuckDBPyConnection, table: str, new_rows: str, window: str) -> str:
    """SELECT of ``table`` after the swap: its rows outside ``window`` (unless it is absent or
    of another shape, in which case the caller drops it) plus ``new_rows``."""
    from churn.warehouse import table_exists

    new = f"SELECT * FROM {quote_identifier(new_rows)}"
    if not table_exists(con, table):
        return new
    old_columns = con.execute(f"DESCRIBE {quote_identifier(table)}").fetchall()
    new_columns = con.execute(f"DESCRIBE {quote_identifier(new_rows)}").fetchall()
    if [row[0] for row in old_columns] != [row[0] for row in new_columns]:
        return new
    return f"SELECT * FROM {quote_identifier(table)} WHERE NOT ({window}) UNION ALL BY NAME {new}"


def _temporary(target: Path, kind: str) -> Path:
    """A hidden name next to ``target`` (same folder, so same filesystem: renames are atomic)."""
    return target.with_name(f".{target.name}.{os.getpid()}.{kind}")


def _remove(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
