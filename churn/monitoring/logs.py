"""Exactly-once ingestion of the scoring service's prediction logs into DuckDB.

Only closed ``*.jsonl`` files are read (the service renames ``.jsonl.open`` when a file is
complete), so a half-written file is never loaded. A ``.jsonl.open`` left by a service process
that died (SIGKILL, OOM) is sealed first when clearly abandoned
(:func:`churn.monitoring.prediction_log.recover_orphans`), so its answered rows are not lost.
Each file's rows and its entry in
``prediction_log_files`` (name + SHA-256 of the content) are written in one transaction: a crash
leaves either both or neither, and a file whose name or content was already ingested is skipped,
so re-running the asset, or copying a file twice, never duplicates a row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from churn.ingest.incoming import content_hash
from churn.monitoring.prediction_log import LOG_COLUMNS, closed_files, recover_orphans
from churn.sql import quote_path
from churn.warehouse import transaction

LOG_TABLE = "prediction_logs"
FILES_TABLE = "prediction_log_files"

# LOG_COLUMNS (field -> DuckDB type) is declared once, with the record, in prediction_log.

DDL = f"""
CREATE TABLE IF NOT EXISTS {LOG_TABLE} (
    {", ".join(f"{name} {kind}" for name, kind in LOG_COLUMNS.items())},
    _source_file VARCHAR, _ingested_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS {FILES_TABLE} (
    file_name VARCHAR PRIMARY KEY, content_sha256 VARCHAR, rows BIGINT, ingested_at TIMESTAMPTZ
);
"""


@dataclass
class IngestSummary:
    """What one ingestion pass did, for metadata and tests."""

    files_loaded: list[str] = field(default_factory=list)
    rows_loaded: int = 0
    skipped_duplicates: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    recovered: list[str] = field(default_factory=list)
    """Abandoned ``.jsonl.open`` files sealed (and then loaded) by this pass."""


def relative_name(path: Path, folder: Path) -> str:
    """``<day>/<file>.jsonl``: unique across days, stable when CHURN_HOME moves."""
    return path.relative_to(folder).as_posix()


def _select_file(path: Path) -> str:
    """The file's rows with ``$source`` (bound) as ``_source_file``. The path goes through
    :func:`churn.sql.quote_path` (quoted, glob characters escaped), so a file named with ``*``
    or ``[`` reads only itself."""
    columns = "{" + ", ".join(f"'{c}': '{t}'" for c, t in LOG_COLUMNS.items()) + "}"
    return (
        "SELECT *, $source AS _source_file, now() AS _ingested_at "
        f"FROM read_json({quote_path(path)}, format = 'newline_delimited', columns = {columns})"
    )


def ingest_logs(con: duckdb.DuckDBPyConnection, folder: Path) -> IngestSummary:
    """Load every closed log file under ``folder`` not loaded before; return what happened.

    A file that cannot be parsed is reported in ``failed`` and retried next time (nothing of it
    is written), so one corrupt file never blocks the others.
    """
    con.execute(DDL)
    for name, kind in LOG_COLUMNS.items():  # tables created before a column existed
        con.execute(f"ALTER TABLE {LOG_TABLE} ADD COLUMN IF NOT EXISTS {name} {kind}")
    summary = IngestSummary()
    summary.recovered = [relative_name(path, folder) for path in recover_orphans(folder)]
    known_names = {row[0] for row in con.execute(f"SELECT file_name FROM {FILES_TABLE}").fetchall()}
    known_hashes = {
        row[0] for row in con.execute(f"SELECT content_sha256 FROM {FILES_TABLE}").fetchall()
    }
    for path in closed_files(folder):
        name = relative_name(path, folder)
        if name in known_names:
            continue
        digest = content_hash(path)
        if digest in known_hashes:
            summary.skipped_duplicates.append(name)
            continue
        try:
            with transaction(con):
                con.execute(
                    f"INSERT INTO {LOG_TABLE} BY NAME {_select_file(path)}", {"source": name}
                )
                rows = con.execute(
                    f"SELECT count(*) FROM {LOG_TABLE} WHERE _source_file = ?", [name]
                ).fetchone()[0]
                con.execute(
                    f"INSERT INTO {FILES_TABLE} VALUES (?, ?, ?, now())", [name, digest, rows]
                )
        except duckdb.Error as error:
            summary.failed[name] = str(error).splitlines()[0]
            continue
        known_names.add(name)
        known_hashes.add(digest)
        summary.files_loaded.append(name)
        summary.rows_loaded += rows
    return summary


def volume_by_version(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """Per model version: rows, files, score quantiles and risk-tier counts (for metadata)."""
    return con.execute(
        f"""
        SELECT model_version, count(*) AS rows, count(DISTINCT _source_file) AS files,
            round(avg(churn_probability), 4) AS mean_score,
            round(quantile_cont(churn_probability, 0.1), 4) AS p10,
            round(quantile_cont(churn_probability, 0.5), 4) AS p50,
            round(quantile_cont(churn_probability, 0.9), 4) AS p90,
            count(*) FILTER (WHERE risk_tier = 'low') AS low,
            count(*) FILTER (WHERE risk_tier = 'medium') AS medium,
            count(*) FILTER (WHERE risk_tier = 'high') AS high,
            min(logged_at) AS first_logged, max(logged_at) AS last_logged
        FROM {LOG_TABLE} GROUP BY model_version ORDER BY last_logged
        """
    ).fetchall()


VERSION_COLUMNS = (
    "model_version",
    "rows",
    "files",
    "mean_score",
    "p10",
    "p50",
    "p90",
    "low",
    "medium",
    "high",
    "first_logged",
    "last_logged",
)
