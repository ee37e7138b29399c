"""When to retrain: when labels have matured for an observation date after the champion's window.

A retrain on the rows the champion already learned from yields the same model again (the gate
then refuses it as ``nothing_new``), so drift alone is never a reason: new data without new
labels has nothing to teach a supervised model. Something new to learn means a date after the
champion's training window (``data_window`` in its card) whose labels have matured (a non-NULL
``churned`` in ``churn_labels``). This module decides that, without Dagster; the retrain sensor
(``churn_assets.defs.monitoring.sensors``) asks it once per tick.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import duckdb

from churn.warehouse import table_exists

WINDOW_DATES = ("train_dates", "validation_dates", "test_dates")


def newest_matured_date(con: duckdb.DuckDBPyConnection) -> date | None:
    """The newest observation date with at least one matured (non-NULL) label, or None."""
    if not table_exists(con, "churn_labels"):
        return None
    found = con.execute(
        "SELECT max(observation_date) FROM churn_labels WHERE churned IS NOT NULL"
    ).fetchone()
    return _as_date(found[0]) if found and found[0] is not None else None


def window_end(card: Mapping[str, Any]) -> date | None:
    """The newest observation date the model behind ``card`` learned from or was tested on."""
    window = card.get("data_window") or {}
    dates = [_as_date(day) for block in WINDOW_DATES for day in window.get(block) or ()]
    return max(dates) if dates else None


@dataclass(frozen=True)
class RetrainDecision:
    """Whether to retrain now; ``reason`` says why in one sentence, ``newest`` keys the run."""

    due: bool
    reason: str
    newest: date | None = None

    @property
    def run_key(self) -> str | None:
        """One retrain per newest matured date: a refused retrain is not repeated every tick."""
        return f"retrain-labels-{self.newest.isoformat()}" if self.due and self.newest else None


def decide_retrain(
    newest_matured: date | None, champion_tag: str | None, champion_card: Mapping[str, Any] | None
) -> RetrainDecision:
    """Retrain when ``newest_matured`` lies after the champion's window."""
    if champion_tag is None or champion_card is None:
        return RetrainDecision(
            False, "no champion yet: the first one comes from materializing the whole graph"
        )
    if newest_matured is None:
        return RetrainDecision(False, "no matured labels in churn_labels yet")
    end = window_end(champion_card)
    if end is None:
        return RetrainDecision(
            True,
            f"champion {champion_tag} records no training window; labels matured up to "
            f"{newest_matured}",
            newest_matured,
        )
    if newest_matured <= end:
        return RetrainDecision(
            False,
            f"no labels matured after champion {champion_tag}'s window (through {end}; newest "
            f"matured {newest_matured}): nothing new to learn",
            newest_matured,
        )
    return RetrainDecision(
        True,
        f"labels matured for {newest_matured}, after champion {champion_tag}'s window "
        f"(through {end})",
        newest_matured,
    )


def _as_date(value: Any) -> date:
    if isinstance(value, date):
        return value if type(value) is date else value.date()
    return date.fromisoformat(str(value)[:10])
