"""The ``model_registry`` table: every candidate of every run, and the lifecycle of winners.

This module is the table's one owner: its DDL, the candidates' rows that ``model_evaluation``
writes (:func:`record_candidates`), and four lifecycle columns kept up to date on the winners'
rows (added to tables created before they existed):

* ``role`` — ``champion`` / ``challenger`` / ``retired`` (mirrors the store's ``role`` label),
* ``promoted_at`` — when the model became the champion (at save under ``immediate``; when the
  promotion job ran for a challenger),
* ``retired_at`` — when it stopped being champion or challenger,
* ``promotion_evidence`` — why: the gate's reason, or the realized comparison (AUC delta and its
  bootstrap interval) that promoted a challenger.

So ``SELECT model_tag, role, promoted_at, retired_at FROM model_registry WHERE is_winner ORDER
BY trained_at`` is the history of who served when.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb

from churn.registry.policy import SavedWinner
from churn.registry.roles import CHALLENGER, CHAMPION, RETIRED, Promotion

CANDIDATE_COLUMNS = {
    "run_id": "VARCHAR",
    "trained_at": "TIMESTAMPTZ",
    "candidate": "VARCHAR",
    "is_winner": "BOOLEAN",
    "validation_auc": "DOUBLE",
    "test_auc": "DOUBLE",
    "test_metrics": "JSON",
    "oracle_auc": "DOUBLE",
    "gate_decision": "VARCHAR",
    "gate_reason": "VARCHAR",
    "training_window": "JSON",
    "data_fingerprint": "VARCHAR",
    "fit_seconds": "DOUBLE",
}
"""One row per candidate and training run, written by :func:`record_candidates`."""
PASSED_GATE = "passed_gate"
"""The winner's ``gate_decision`` between the gate and the save: :func:`record_saved` turns it
into ``promoted`` in the same statement that sets ``model_tag``, so a run that fails in between
(the save, the disk) never leaves a ``promoted`` row without a model tag."""
PROMOTED = "promoted"
HISTORY_COLUMNS = {
    "role": "VARCHAR",
    "promoted_at": "TIMESTAMPTZ",
    "retired_at": "TIMESTAMPTZ",
    "promotion_evidence": "JSON",
}


def ensure_table(con: duckdb.DuckDBPyConnection) -> None:
    """Create ``model_registry`` (or add the lifecycle columns to an older one)."""
    columns = CANDIDATE_COLUMNS | {"model_tag": "VARCHAR"} | HISTORY_COLUMNS
    ddl = ", ".join(f"{name} {kind}" for name, kind in columns.items())
    con.execute(f"CREATE TABLE IF NOT EXISTS model_registry ({ddl})")
    for name, kind in HISTORY_COLUMNS.items():
        con.execute(f"ALTER TABLE model_registry ADD COLUMN IF NOT EXISTS {name} {kind}")


def _retire(con: duckdb.DuckDBPyConnection, role: str, keep: str) -> None:
    """Rows of other models holding ``role`` (NULL counts as champion: older rows) retire."""
    current = "coalesce(role, 'champion')" if role == CHAMPION else "role"
    con.execute(
        f"UPDATE model_registry SET role = '{RETIRED}', retired_at = now() "
        f"WHERE is_winner AND model_tag IS NOT NULL AND model_tag <> ? AND {current} = ?",
        [keep, role],
    )


def record_candidates(con: duckdb.DuckDBPyConnection, rows: list[tuple]) -> None:
    """One row per candidate, values in :data:`CANDIDATE_COLUMNS` order; the lifecycle columns
    stay NULL until :func:`record_saved` or :func:`record_promotion` fill them."""
    ensure_table(con)
    names = ", ".join(CANDIDATE_COLUMNS)
    marks = ", ".join("?" * len(CANDIDATE_COLUMNS))
    con.executemany(f"INSERT INTO model_registry ({names}) VALUES ({marks})", rows)


def record_saved(con: duckdb.DuckDBPyConnection, run_id: str, saved: SavedWinner) -> None:
    """The winner of ``run_id`` was saved as ``saved.role``."""
    ensure_table(con)
    evidence = json.dumps({"event": f"saved as {saved.role}", "reason": saved.reason})
    con.execute(
        "UPDATE model_registry SET model_tag = ?, role = ?, promotion_evidence = ?, "
        "promoted_at = CASE WHEN ? THEN now() END, "
        "gate_decision = CASE WHEN gate_decision = ? THEN ? ELSE gate_decision END "
        "WHERE run_id = ? AND is_winner",
        [
            saved.tag,
            saved.role,
            evidence,
            saved.role == CHAMPION,
            PASSED_GATE,
            PROMOTED,
            run_id,
        ],
    )
    _retire(con, saved.role, saved.tag)


def record_promotion(
    con: duckdb.DuckDBPyConnection, promotion: Promotion, evidence: dict[str, Any]
) -> None:
    """A challenger became the champion on realized results."""
    ensure_table(con)
    con.execute(
        "UPDATE model_registry SET role = ?, promoted_at = now(), promotion_evidence = ? "
        "WHERE is_winner AND model_tag = ?",
        [
            CHAMPION,
            json.dumps({"event": "promoted from challenger", **evidence}),
            promotion.champion,
        ],
    )
    _retire(con, CHAMPION, promotion.champion)
    _retire(con, CHALLENGER, promotion.champion)


def history(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Winners with their lifecycle, oldest first."""
    ensure_table(con)
    cursor = con.execute(
        "SELECT model_tag, candidate, role, trained_at, promoted_at, retired_at, "
        "CAST(promotion_evidence AS VARCHAR) AS promotion_evidence FROM model_registry "
        "WHERE is_winner AND model_tag IS NOT NULL ORDER BY trained_at"
    )
    names = [c[0] for c in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
