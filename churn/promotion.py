"""The champion/challenger lifecycle in the ``model_registry`` table.

``model_evaluation`` writes one row per candidate and run; these helpers keep four more columns
up to date on the winners' rows (added to older tables in place):

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

from churn.roles import CHALLENGER, CHAMPION, RETIRED, Promotion, SavedWinner

HISTORY_COLUMNS = {
    "role": "VARCHAR",
    "promoted_at": "TIMESTAMPTZ",
    "retired_at": "TIMESTAMPTZ",
    "promotion_evidence": "JSON",
}


def ensure_history_columns(con: duckdb.DuckDBPyConnection) -> None:
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


def record_saved(con: duckdb.DuckDBPyConnection, run_id: str, saved: SavedWinner) -> None:
    """The winner of ``run_id`` was saved as ``saved.role``."""
    ensure_history_columns(con)
    evidence = json.dumps({"event": f"saved as {saved.role}", "reason": saved.reason})
    con.execute(
        "UPDATE model_registry SET model_tag = ?, role = ?, promotion_evidence = ?, "
        "promoted_at = CASE WHEN ? THEN now() END WHERE run_id = ? AND is_winner",
        [saved.tag, saved.role, evidence, saved.role == CHAMPION, run_id],
    )
    _retire(con, saved.role, saved.tag)


def record_promotion(
    con: duckdb.DuckDBPyConnection, promotion: Promotion, evidence: dict[str, Any]
) -> None:
    """A challenger became the champion on realized results."""
    ensure_history_columns(con)
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
    ensure_history_columns(con)
    cursor = con.execute(
        "SELECT model_tag, candidate, role, trained_at, promoted_at, retired_at, "
        "CAST(promotion_evidence AS VARCHAR) AS promotion_evidence FROM model_registry "
        "WHERE is_winner AND model_tag IS NOT NULL ORDER BY trained_at"
    )
    names = [c[0] for c in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
