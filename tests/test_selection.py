"""Time-ordered model selection (``churn/modeling/selection.py``) on a small real event log.

The selection must never read a test row, must respect each fold's label embargo, and must
hand its choice (settings and training window) to the final fit; a logistic winner must score
with reasons like a LightGBM one. BTYD features are an experiment measured on the same folds.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pytest

from churn.features import FEATURE_NAMES, FEATURES
from churn.ingest.landing import find_source_file, land_file
from churn.ingest.schema import RAW_TABLES
from churn.ingest.staging import stage_table
from churn.modeling.btyd_features import NAMES, btyd_columns
from churn.modeling.candidates import LightGBMConfig, LogisticConfig
from churn.modeling.selection import (
    LIGHTGBM,
    LOGISTIC,
    Candidate,
    Window,
    compare_extra_columns,
    group_folds,
    select,
    time_folds,
)
from churn.modeling.split import _as_days
from churn.modeling.training import (
    Economics,
    evaluate_candidates,
    pooled,
    prepare,
    select_candidates,
    train_candidates,
)
from churn.scoring.scorer import Scorer
from tests.small_data import HORIZON_DAYS, training_frame

FAST_TREES = LightGBMConfig(n_estimators=150, early_stopping_rounds=20)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory):
    """The small generated data split by time, and a DuckDB with its staged events."""
    folder: Path = tmp_path_factory.mktemp("selection")
    frame = training_frame(folder)
    con = duckdb.connect()
    for table in RAW_TABLES:
        land_file(con, find_source_file(folder / "raw", table), table, replace=True)
    for table in RAW_TABLES:
        stage_table(con, table)
    data = prepare(
        frame,
        list(FEATURE_NAMES),
        validation_months=1,
        test_months=2,
        horizon_days=HORIZON_DAYS,
        features=list(FEATURES),
    )
    yield data, con
    con.close()


@pytest.fixture(scope="module")
def selection(small):
    data, _ = small
    return select_candidates(
        data, LogisticConfig(), FAST_TREES, horizon_days=HORIZON_DAYS, log=print
    )


def test_time_folds_expand_and_respect_the_label_embargo():
    dates = np.repeat(np.arange("2025-01", "2025-09", dtype="datetime64[M]"), 5)
    folds = time_folds(dates.astype("datetime64[D]"), horizon_days=30, folds=3)
    assert len(folds) == 3
    days = dates.astype("datetime64[D]")
    previous = 0
    for fold in folds:
        held = np.unique(days[fold.held])
        assert held.size == 1
        # every fitted date's label window closed before the held date
        assert (days[fold.fit] + np.timedelta64(30, "D") <= held[0]).all()
        assert fold.fit.size > previous  # expanding
        previous = fold.fit.size
    # a 90-day horizon leaves a gap of three months before each held date
    wide = time_folds(days, horizon_days=90, folds=3)
    assert all(days[f.fit].max() + np.timedelta64(90, "D") <= days[f.held].min() for f in wide)


def test_the_selection_never_reads_a_test_row(small, selection):
    data, _ = small
    assert selection is not None and selection.kind == "time"
    _, _, frame = pooled(data)
    assert len(frame) == data.train.rows + data.validation.rows
    test_start = _as_days(data.test.frame["observation_date"]).min()
    pool_days = _as_days(frame["observation_date"])
    for fold in selection.folds:
        assert pool_days[fold.fit].max() < test_start
        assert pool_days[fold.held].max() < test_start
        assert fold.held_dates and max(fold.held_dates) < str(test_start)
    test_keys = set(
        zip(data.test.frame["customer_id"], data.test.frame["observation_date"], strict=True)
    )
    pool_keys = set(zip(frame["customer_id"], frame["observation_date"], strict=True))
    assert not test_keys & pool_keys


def test_the_grid_the_windows_and_the_choice_are_reported(selection):
    names = [trial.candidate.name for trial in selection.trials]
    assert len(names) == len(set(names))
    families = {trial.candidate.family for trial in selection.trials}
    assert families == {LIGHTGBM, LOGISTIC}
    windows = {trial.candidate.window.kind for trial in selection.trials}
    assert windows == {"all", "recent", "decay"}
    # the windows are tried for the leading setting only
    windowed = {t.candidate.family for t in selection.trials if t.candidate.window.kind != "all"}
    assert windowed == {selection.chosen}
    assert all(len(trial.aucs) == len(selection.folds) for trial in selection.trials)
    best = {
        family: max(t.mean for t in selection.trials if t.candidate.family == family)
        for family in families
    }
    assert selection.chosen == max(best, key=best.get)
    card = selection.to_dict()
    assert card["winner_family"] == selection.chosen
    assert {row["chosen"] for row in card["trials"]} >= {"winner"}
    assert set(card["window"]) == {LIGHTGBM, LOGISTIC}


def test_the_final_fit_uses_the_chosen_settings_and_window(small, selection):
    data, _ = small
    models = train_candidates(data, LogisticConfig(), FAST_TREES, selection)
    for family, candidate in selection.best.items():
        window = models[family].params["window"]
        assert window["kind"] == candidate.window.kind
        assert window["months"] == candidate.window.months
        if candidate.window.kind == "recent":
            assert window["rows"] < data.train.rows
    tree = selection.best[LIGHTGBM].lightgbm
    assert models[LIGHTGBM].params["num_leaves"] == tree.num_leaves
    evaluation = evaluate_candidates(data, models, None, Economics(), winner=selection.chosen)
    assert evaluation.winner == selection.chosen


def test_windows_weigh_recent_months_more():
    days = np.repeat(np.arange("2025-01", "2025-09", dtype="datetime64[M]"), 2).astype(
        "datetime64[D]"
    )
    assert (Window().weights(days) == 1).all()
    recent = Window("recent", 3).weights(days)
    assert recent.sum() == 6 and (recent[-6:] == 1).all()
    decay = Window("decay", 3).weights(days)
    assert decay[-1] == 1.0 and np.all(np.diff(decay) >= 0)
    age_months = (days[-1] - days[0]).astype(float) / 30.4375
    assert decay[0] == pytest.approx(0.5 ** (age_months / 3))


def test_a_logistic_winner_scores_and_serves_with_reasons(small):
    """Forced through the same path a logistic winner takes: exact linear contributions as
    reasons, the probability the scorer shows equal to the model's own."""
    data, _ = small
    folds = time_folds(pooled(data)[2]["observation_date"], horizon_days=HORIZON_DAYS)
    X, y, frame = pooled(data)
    only_linear = select(
        X,
        y,
        data.specs,
        folds,
        [Candidate(LOGISTIC, logistic=LogisticConfig())],
        dates=frame["observation_date"],
    )
    assert only_linear is not None and only_linear.chosen == LOGISTIC
    models = train_candidates(data, LogisticConfig(), FAST_TREES, only_linear)
    evaluation = evaluate_candidates(data, models, None, Economics(), winner=LOGISTIC)
    model = models[evaluation.winner]
    assert model.kind == "logistic_regression"
    card = {
        "feature_order": [s.name for s in data.specs],
        "thresholds": evaluation.thresholds,
        "risk_tiers": {
            "low_medium": evaluation.risk_tier_cuts[0],
            "medium_high": evaluation.risk_tier_cuts[1],
        },
    }
    scorer = Scorer(model, card, "churn_model:test")
    records = data.test.frame[[s.name for s in data.specs]].head(20).to_dict("records")
    scored = scorer.score([f"c{i}" for i in range(20)], records)
    assert np.allclose(scored.probabilities, model.predict_proba(data.test.X[:20]))
    contributions = model.contributions(data.test.X[:20])
    assert np.allclose(model.bias + contributions.sum(axis=1), model.log_odds(data.test.X[:20]))
    for row in scored.scores:
        assert 1 <= len(row["reasons"]) <= 3
        assert all(r["text"] for r in row["reasons"])


def test_grouped_folds_keep_a_customer_in_one_fold():
    y = np.array([0, 1, 0, 0, 1, 0, 0, 0, 1, 0] * 3)
    groups = np.repeat(np.arange(10), 3)
    folds = group_folds(y, groups, folds=3)
    assert sorted(np.concatenate([f.held for f in folds]).tolist()) == list(range(30))
    for fold in folds:
        assert not set(groups[fold.fit]) & set(groups[fold.held])


def test_btyd_features_are_point_in_time_and_measured_on_the_same_folds(small, selection):
    data, con = small
    X, y, frame = pooled(data)
    columns, fitted = btyd_columns(con, frame, HORIZON_DAYS)
    assert columns.shape == (len(frame), 2)
    assert sorted(fitted) == sorted({str(d)[:10] for d in frame["observation_date"]})
    alive = columns[:, 0]
    assert np.nanmin(alive) >= 0 and np.nanmax(alive) <= 1
    assert np.isfinite(columns[:, 1]).mean() > 0.9
    # an event after the observation date cannot move that date's value: refit with the log
    # cut at the first test date and the pooled rows' values are the same
    test_start = str(_as_days(data.test.frame["observation_date"]).min())
    con.execute(
        "CREATE OR REPLACE TABLE cut_events AS SELECT * FROM stg_events WHERE event_time < $d",
        {"d": test_start},
    )
    cut, _ = btyd_columns(con, frame, HORIZON_DAYS, events="cut_events")
    # (to the optimizer's tolerance: the fit starts from the same point on the same triples)
    difference = np.nanmax(np.abs(cut - columns) / np.maximum(np.abs(columns), 1e-9), axis=0)
    assert (difference < 1e-3).all(), difference
    report = compare_extra_columns(
        selection, X, y, columns, NAMES, data.specs, dates=frame["observation_date"]
    )
    assert report["features"] == list(NAMES)
    assert isinstance(report["improves"], bool)


def test_selection_is_none_without_a_scorable_fold(small):
    data, _ = small
    X, y, frame = pooled(data)
    one_date = replace(time_folds(frame["observation_date"], horizon_days=HORIZON_DAYS)[0])
    y_flat = np.zeros_like(y)
    assert select(X, y_flat, data.specs, [one_date], [Candidate(LOGISTIC)]) is None


def test_the_card_records_what_was_tried_and_chosen(small, selection):
    import json

    from churn.modeling.card import build_card, json_safe
    from churn.modeling.gate import decide

    data, _ = small
    models = train_candidates(data, LogisticConfig(), FAST_TREES, selection)
    evaluation = evaluate_candidates(data, models, None, Economics(), winner=selection.chosen)
    evaluation.selection = json_safe(selection.to_dict())
    decision = decide(evaluation.winning.test["roc_auc"], auc_floor=0.5)
    card = build_card(
        data,
        evaluation,
        decision,
        run_id="r",
        source="synthetic",
        horizon_days=HORIZON_DAYS,
        gate_settings={},
    )
    json.dumps(card, allow_nan=False)  # strict JSON, as /model returns it
    chosen = card["model_selection"]
    assert card["model_kind"] == chosen["winner_family"] == selection.chosen
    assert chosen["chosen"][selection.chosen] == selection.best[selection.chosen].name
    assert len(chosen["trials"]) == len(selection.trials)
    assert all(fold["held_dates"] for fold in chosen["folds"])


def test_the_backtest_refits_with_the_chosen_window(small):
    import pandas as pd

    from churn.modeling.backtest import backtest, recipe_of
    from churn.modeling.selection import fit_candidate

    data, _ = small
    frame = pd.concat([data.train.frame, data.validation.frame, data.test.frame])
    recent = Candidate(LOGISTIC, logistic=LogisticConfig(), window=Window("recent", 2))
    model = fit_candidate(
        recent,
        data.train.X,
        data.train.y,
        recent.window.weights(data.train.frame["observation_date"]),
        data.validation.X,
        data.validation.y,
        data.specs,
    )
    model.params["window"] = {"kind": "recent", "months": 2}
    recipe = recipe_of(model)
    assert recipe.window == ("recent", 2)
    everything = replace(recipe, window=("all", 0))
    windowed = backtest(frame, list(FEATURES), recipe, horizon_days=HORIZON_DAYS, months=2)
    full = backtest(frame, list(FEATURES), everything, horizon_days=HORIZON_DAYS, months=2)
    assert [m.train_rows for m in windowed] == [m.train_rows for m in full]
    assert all(m.roc_auc is not None for m in windowed)
    assert [m.roc_auc for m in windowed] != [m.roc_auc for m in full]
