"""The forward simulation (issue 24, item 7): the synthetic world advanced month by month by its
own generator, through the real sensors, schedule and automation, never reloading the code
location.

A small world (800 customers, seven generated months) is materialized once; then, four times:
the generator simulates the next calendar month (``churn.synthetic.advance``) into
``incoming/<table>/``, ``CHURN_TODAY`` steps to the new month in progress, and every tick that
would fire in production is evaluated with Dagster's own test APIs (``build_sensor_context``,
``build_schedule_context``, ``evaluate_automation_conditions``) against the one ``defs`` object
imported at the top; each returned request is executed in-process with its own tags and run
config. The last month carries a 90% usage drop in one region.

What it shows: each month's partition appears and is scored; the previous month's labels mature
and ``model_performance`` records that month's realized quality; the retrain sensor asks for a
run exactly when a new observation date matured after the champion's window (and not before the
month lands, nor again once the new champion covers it); the champion changes only when the gate
passes, to a model trained on newer data; ``drift_check`` passes on the stationary months and
fails on the usage drop.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.parquet as pq
import pytest

from churn import registry
from churn.modeling.retrain import window_end
from churn.synthetic.advance import Advanced, Shift, advance
from churn_assets.definitions import defs
from churn_assets.defs.features.schedules import MONTHLY_SELECTION, monthly_refresh
from churn_assets.defs.features.sensors import new_month_sensor
from churn_assets.defs.monitoring.sensors import RETRAIN_SELECTION, new_labels_retrain_sensor
from churn_assets.defs.raw.sensors import (
    INCOMING_SELECTION,
    SETTLE_SECONDS,
    incoming_files_sensor,
)
from churn_assets.defs.scoring.sensors import SCORING
from churn_assets.partitions import (
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    calendar_keys,
)
from churn_assets.resources import ChurnHomeResource, EngineResource, WarehouseResource
from tests.graph import materialize_graph, own_bentoml_store

pytestmark = pytest.mark.slow

WORLD = {
    "CHURN_CUSTOMERS": "800",
    "CHURN_MONTHS": "7",
    "CHURN_SEED": "21",
    "CHURN_START_DATE": "2025-01-01",
}
FIRST_MONTH_IN_PROGRESS = date(2025, 8, 1)  # start + 7 months
STATIONARY_MONTHS = 3
DROP = Shift("usage_drop", region="north", pct=90.0)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh CHURN_HOME for this world; this process's BentoML stores point into it."""
    home = tmp_path / "home"
    for name, value in WORLD.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CHURN_HOME", str(home))
    monkeypatch.setenv("CHURN_TODAY", FIRST_MONTH_IN_PROGRESS.isoformat())
    monkeypatch.delenv("CHURN_ALERT_WEBHOOK", raising=False)
    with own_bentoml_store(home / "bentoml"):
        yield home


@dataclass
class Month:
    """What one advanced month did, for the assertions."""

    advanced: Advanced
    retrain_requested: bool
    gate_passed: bool | None
    champion_before: str
    champion_after: str
    drift_passed: bool
    drift_description: str
    realized_dates: list[str]
    scored_rows: int
    matured_labels: int


@dataclass
class Loop:
    """The production loop's ticks, evaluated in-process against the one ``defs``."""

    home: Path
    instance: dg.DagsterInstance
    scoring_cursor: object = None
    refused: str | None = None
    """The run key of the last retrain the gate refused (its request stands until new labels)."""
    months: list[Month] = field(default_factory=list)

    def resources(self) -> dict:
        return {
            "warehouse": WarehouseResource(path=str(self.home / "warehouse.duckdb")),
            "churn_home": ChurnHomeResource(home=str(self.home)),
            "engine": EngineResource(home=str(self.home)),
        }

    def execute(
        self,
        selection: dg.AssetSelection,
        request: dg.RunRequest | None = None,
        partition_key: str | None = None,
        *,
        may_fail: bool = False,
    ) -> dg.ExecuteInProcessResult:
        """Run what a tick requested, with its tags and run config; ``may_fail``: a refusal
        by a blocking ERROR check fails the run, as in production."""
        result = dg.materialize(
            assets=list(defs.assets or []),
            selection=selection,
            resources=self.resources(),
            instance=self.instance,
            tags=dict(request.tags) if request is not None else None,
            run_config=request.run_config if request is not None else None,
            partition_key=partition_key,
            raise_on_error=not may_fail,
        )
        assert may_fail or result.success
        return result

    def sensor(self, sensor: dg.SensorDefinition):
        return sensor(dg.build_sensor_context(instance=self.instance, definitions=defs))

    def automation(self, selection: dg.AssetSelection, cursor: object):
        return dg.evaluate_automation_conditions(
            defs=defs, instance=self.instance, asset_selection=selection, cursor=cursor
        )

    def seed_automation(self) -> None:
        """The scoring automation's first tick after the initial materialization."""
        self.scoring_cursor = self.automation(SCORING, None).cursor

    def step(self, monkeypatch: pytest.MonkeyPatch, shift: Shift | None) -> Month:
        quiet = self.sensor(new_labels_retrain_sensor)
        if self.refused is None:
            assert isinstance(quiet, dg.SkipReason), "no new labels before the month lands"
        else:  # the last retrain was refused: its request stands, the daemon never relaunches it
            assert quiet.run_key == self.refused, "nothing new before the month lands"
        before = registry.latest_tag()

        advanced = advance(self.home, contacts=_contact_list(self.home), shift=shift)
        settled = time.time() - SETTLE_SECONDS - 5
        for path in advanced.files:
            os.utime(path, (settled, settled))
        new_date = advanced.observation_date.isoformat()
        monkeypatch.setenv("CHURN_TODAY", new_date)

        landing = self.sensor(incoming_files_sensor)
        assert isinstance(landing, dg.RunRequest), landing
        assert int(landing.tags["churn/files"]) == len(advanced.files)
        self.execute(INCOMING_SELECTION, landing)
        assert calendar_keys(self.instance)[-1] == new_date, "the month joined the calendar"

        new_month = self.sensor(new_month_sensor)
        assert isinstance(new_month, dg.RunRequest), new_month
        assert new_month.tags[PARTITION_RANGE_START_TAG] == new_date
        on_the_first = datetime.combine(advanced.observation_date, datetime.min.time(), UTC)
        with dg.build_schedule_context(
            instance=self.instance, scheduled_execution_time=on_the_first.replace(hour=6)
        ) as context:
            refresh = monthly_refresh(context)
        assert refresh.tags[PARTITION_RANGE_END_TAG] == new_date, "the schedule sees it too"
        monthly = self.execute(MONTHLY_SELECTION, new_month)
        assert isinstance(self.sensor(new_month_sensor), dg.SkipReason)

        retrain = self.sensor(new_labels_retrain_sensor)
        gate_passed = None
        if isinstance(retrain, dg.RunRequest):
            assert retrain.run_key == f"retrain-labels-{advanced.month.isoformat()}"
            run = self.execute(RETRAIN_SELECTION, retrain, may_fail=True)
            gate = _check(run, "quality_gate")
            assert gate is not None
            gate_passed = gate.passed
            assert run.success == (gate.passed or gate.severity == dg.AssetCheckSeverity.WARN)
            again = self.sensor(new_labels_retrain_sensor)
            if gate_passed:
                assert isinstance(again, dg.SkipReason), "the new champion covers the month"
                self.refused = None
            else:
                assert again.run_key == retrain.run_key, "one retrain per matured date"
                self.refused = retrain.run_key

        scoring = self.automation(SCORING, self.scoring_cursor)
        self.scoring_cursor = scoring.cursor
        scores_key = dg.AssetKey("customer_scores")
        requested = (
            scoring.get_requested_partitions(scores_key) if scoring.total_requested else set()
        )
        assert requested == {new_date}, "the scoring automation scores the new month"
        self.execute(SCORING, partition_key=new_date)

        # drift and realized quality as the new month's run computed them; the monitoring
        # automation's refresh after the re-score is not run (another ~minute of Evidently a
        # month, and nothing this test looks at changes)
        drift = _check(monthly, "drift_check")
        assert drift is not None
        month = Month(
            advanced=advanced,
            retrain_requested=isinstance(retrain, dg.RunRequest),
            gate_passed=gate_passed,
            champion_before=before,
            champion_after=registry.latest_tag(),
            drift_passed=drift.passed,
            drift_description=drift.description or "",
            realized_dates=_realized_dates(self.instance),
            scored_rows=_count(self.home, "customer_scores", new_date),
            matured_labels=_count(self.home, "churn_labels", advanced.month.isoformat(), True),
        )
        self.months.append(month)
        return month


def _contact_list(home: Path) -> Path | None:
    """The newest month's export, once ``customer_scores`` says whom to contact: the generator
    applies its known contact effect to them (``truth/contact_effect.parquet``)."""
    export = home / "exports" / "customer_scores_latest.parquet"
    if export.exists() and "contact" in pq.read_schema(export).names:
        return export
    return None


def _check(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation | None:
    found = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return found[-1] if found else None


def _realized_dates(instance: dg.DagsterInstance) -> list[str]:
    """The months ``model_performance`` last recorded realized quality for."""
    event = instance.get_latest_materialization_event(dg.AssetKey("model_performance"))
    assert event is not None and event.asset_materialization is not None
    metadata = event.asset_materialization.metadata
    results = metadata.get("customer_scores_realized_results")
    return sorted({row["observation_date"] for row in results.value}) if results else []


def _count(home: Path, table: str, day: str, labelled: bool = False) -> int:
    where = " AND churned IS NOT NULL" if labelled else ""
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(
            f"SELECT count(*) FROM {table} WHERE observation_date = ?{where}", [day]
        ).fetchone()[0]


def _summary(month: Month) -> str:
    """One line per month for the assertion messages: the story of the run."""
    return (
        f"{month.advanced.month:%Y-%m} -> {month.advanced.observation_date}: "
        f"scored {month.scored_rows}, {month.matured_labels} labels matured, realized "
        f"{month.realized_dates}; retrain {month.retrain_requested}, gate {month.gate_passed}, "
        f"{month.champion_before} -> {month.champion_after}; drift_check "
        f"{'passed' if month.drift_passed else 'failed'}: {month.drift_description[:160]}"
    )


def _window_end(tag: str) -> date | None:
    _, path = registry.locate(tag)
    return window_end(registry.read_card(path))


def test_the_world_advances_month_by_month(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    began = time.perf_counter()
    with dg.instance_for_test() as instance:
        first = materialize_graph(home, instance=instance)
        assert first.result.success
        assert calendar_keys(instance)[-1] == FIRST_MONTH_IN_PROGRESS.isoformat()
        loop = Loop(home, instance)
        loop.seed_automation()
        for index in range(STATIONARY_MONTHS + 1):
            loop.step(monkeypatch, DROP if index == STATIONARY_MONTHS else None)
    seconds = time.perf_counter() - began

    months = loop.months
    story = "\n".join(_summary(m) for m in months) + f"\n({seconds:.0f} s)"
    sys.stderr.write(f"forward simulation:\n{story}\n")  # shown by pytest -rP
    assert [m.advanced.observation_date for m in months] == [
        date(2025, 9, 1),
        date(2025, 10, 1),
        date(2025, 11, 1),
        date(2025, 12, 1),
    ], story
    for month in months:
        matured = month.advanced.month.isoformat()
        assert month.scored_rows > 0, story
        assert month.matured_labels > 0, story
        assert matured in month.realized_dates, story
        # every advanced month matures one new observation date after the champion's window
        assert month.retrain_requested, story
        changed = month.champion_after != month.champion_before
        assert changed == bool(month.gate_passed), story
        if changed:
            assert _window_end(month.champion_after) > _window_end(month.champion_before), story
    for month in months[:STATIONARY_MONTHS]:
        assert month.drift_passed, story
    assert not months[-1].drift_passed, story
    _the_measured_contact_effect_covers_the_true_one(home, story)


def _the_measured_contact_effect_covers_the_true_one(home: Path, story: str) -> None:
    """Every list held out a control group, and the generator lowered the contacted customers'
    churn by a known amount: once labels matured, the realized effect (contacted minus held-out
    churn rate) and its 95% interval must cover minus the mean true effect of those months.
    The control group is 10% of a small list, so the interval is wide: this checks the
    estimator's honesty (no bias that excludes the truth), not its power."""
    import pandas as pd

    from churn.monitoring.performance import realized_effect

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        effects = {e.observation_date: e for e in realized_effect(con)}
    truth = pd.read_parquet(home / "truth" / "contact_effect.parquet")
    truth["observation_date"] = pd.to_datetime(truth["observation_date"]).dt.date.astype(str)
    measured = [day for day in effects if day != "all" and effects[day].held_out > 0]
    assert measured, f"no matured month with a control group\n{story}"
    truth = truth[truth["observation_date"].isin([d for d in effects if d != "all"])]
    assert len(truth) > 0, "the generator applied the contact effect to the contacted"
    pooled = effects["all"] if len(measured) > 1 and "all" in effects else effects[measured[0]]
    true_difference = -float(truth["true_effect"].mean())
    assert pooled.ci_low is not None and pooled.ci_high is not None
    sys.stderr.write(
        f"contact effect: measured {pooled.difference:+.3f} [{pooled.ci_low:+.3f}, "
        f"{pooled.ci_high:+.3f}] over {pooled.contacted} contacted / {pooled.held_out} held out; "
        f"true {true_difference:+.3f}\n"
    )
    assert pooled.ci_low <= true_difference <= pooled.ci_high, (
        f"measured {pooled.difference:+.3f} [{pooled.ci_low:+.3f}, {pooled.ci_high:+.3f}] "
        f"over {pooled.contacted} contacted / {pooled.held_out} held out; "
        f"true {true_difference:+.3f}\n{story}"
    )
