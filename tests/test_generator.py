"""The synthetic generator's contract: schema, calendar semantics, determinism and signal."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churn.ingest.incoming import validate_file
from churn.ingest.schema import RAW_TABLES, TABLES_BY_NAME, TRUTH_FILE
from churn.synthetic import GeneratorConfig, generate, observation_dates
from churn.synthetic.__main__ import main as cli_main
from churn.synthetic.advance import CONTACT_EFFECT_FILE, Shift, advance
from churn.synthetic.advance import main as advance_main
from churn.synthetic.state import StateError

SMALL = GeneratorConfig(customers=500, months=4, seed=7)
MEDIUM = GeneratorConfig(customers=2_000, months=6, seed=11)
HORIZON = timedelta(days=MEDIUM.horizon_days)


def _write(config: GeneratorConfig, root: Path) -> dict[str, pa.Table]:
    generate(config, root / "raw", root / "truth")
    tables = {t.name: pq.read_table(root / "raw" / f"{t.name}.parquet") for t in RAW_TABLES}
    tables["truth"] = pq.read_table(root / "truth" / TRUTH_FILE)
    return tables


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    tables = _write(MEDIUM, tmp_path_factory.mktemp("medium"))
    return {name: table.to_pandas() for name, table in tables.items()}


def _day(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values).dt.normalize()


def _labels(frames: dict[str, pd.DataFrame], config: GeneratorConfig) -> pd.DataFrame:
    """Truth rows whose horizon ends inside the data, with the realized 0/1 label."""
    end = pd.Timestamp(config.start_date) + pd.DateOffset(months=config.months)
    truth = frames["truth"].assign(T=_day(frames["truth"].observation_date))
    cancels = frames["cancellations"].assign(cancel=_day(frames["cancellations"].cancel_date))
    merged = truth.merge(cancels[["customer_id", "cancel", "churn_type"]], "left", "customer_id")
    horizon = pd.Timedelta(days=config.horizon_days)
    merged = merged[merged["T"] + horizon <= end]
    merged["label"] = (merged["cancel"] <= merged["T"] + horizon).astype(int)
    return merged


def _auc(score: np.ndarray, label: np.ndarray) -> float:
    """Mann-Whitney AUC with average ranks for ties."""
    ranks = pd.Series(score).rank().to_numpy()
    positives = label.sum()
    negatives = len(label) - positives
    return (ranks[label == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives)


# ---- determinism ---------------------------------------------------------------------------


def test_same_seed_gives_identical_tables(tmp_path: Path) -> None:
    first = _write(SMALL, tmp_path / "a")
    second = _write(SMALL, tmp_path / "b")
    for name, table in first.items():
        assert table.num_rows > 0, name
        assert table.equals(second[name]), name


def test_different_seed_gives_different_data(tmp_path: Path) -> None:
    first = _write(SMALL, tmp_path / "a")
    other = _write(replace(SMALL, seed=SMALL.seed + 1), tmp_path / "b")
    for name in ("customers", "events", "payments", "truth"):
        assert not first[name].equals(other[name]), name


# ---- schema --------------------------------------------------------------------------------


def test_files_match_schema(tmp_path: Path) -> None:
    tables = _write(SMALL, tmp_path)
    arrow_types = {
        "VARCHAR": pa.string(),
        "DATE": pa.date32(),
        "TIMESTAMP": pa.timestamp("us"),
        "DOUBLE": pa.float64(),
        "INTEGER": pa.int32(),
    }
    for spec in RAW_TABLES:
        table = tables[spec.name]
        assert table.column_names == spec.column_names, spec.name
        frame = table.to_pandas()
        for column in spec.columns:
            assert table.schema.field(column.name).type == arrow_types[column.sql_type]
            values = frame[column.name]
            if column.required:
                assert values.notna().all(), (spec.name, column.name)
            if column.allowed is not None:
                assert set(values.dropna()) <= set(column.allowed), (spec.name, column.name)
            if column.minimum is not None:
                assert values.min() >= column.minimum, (spec.name, column.name)
            if column.maximum is not None:
                assert values.max() <= column.maximum, (spec.name, column.name)
        assert not frame.duplicated(list(spec.key)).any(), spec.name
    truth = tables["truth"]
    assert truth.column_names == ["customer_id", "observation_date", "true_churn_probability"]
    assert truth.schema.field("observation_date").type == pa.date32()
    assert truth.schema.field("true_churn_probability").type == pa.float64()


def test_profiles_are_realistic(medium: dict[str, pd.DataFrame]) -> None:
    customers = medium["customers"]
    assert customers.customer_id.iloc[0] == "C0000001"
    fee = customers.groupby("plan").monthly_fee.median()
    assert fee["basic"] < fee["standard"] < fee["premium"]
    assert 0.25 <= (customers.contract == "annual").mean() <= 0.35
    assert customers.age.between(18, 85).all()
    before = customers.signup_date < MEDIUM.start_date
    assert 0.65 <= before.mean() <= 0.75
    oldest = MEDIUM.start_date - customers.signup_date.min()
    assert timedelta(days=3 * 365) < oldest <= timedelta(days=4 * 365)


def test_events_form_sessions_starting_with_login(medium: dict[str, pd.DataFrame]) -> None:
    events = medium["events"].sort_values(["session_id", "event_time", "event_id"])
    sessions = events.groupby("session_id")
    assert (sessions.customer_id.nunique() == 1).all()
    assert (sessions.event_type.first() == "login").all()
    assert sessions.size().between(1, 8).all()
    # Many short sessions: the session rate is what carries the latent engagement signal.
    assert 1.15 <= sessions.size().mean() <= 1.5
    assert (events.duration_seconds > 0).all()
    assert (sessions.event_time.max() - sessions.event_time.min()).max() < pd.Timedelta(hours=12)


# ---- calendar semantics ---------------------------------------------------------------------


def test_no_activity_outside_subscription(medium: dict[str, pd.DataFrame]) -> None:
    start, end = pd.Timestamp(MEDIUM.start_date), pd.Timestamp("2025-07-01")
    customers = medium["customers"].assign(signup=_day(medium["customers"].signup_date))
    cancels = medium["cancellations"].assign(cancel=_day(medium["cancellations"].cancel_date))
    assert cancels.customer_id.is_unique
    assert cancels.cancel.between(start, end - pd.Timedelta(days=1)).all()
    assert (cancels.merge(customers, on="customer_id").eval("cancel > signup")).all()
    for name, column in (
        ("events", "event_time"),
        ("payments", "payment_date"),
        ("tickets", "created_at"),
    ):
        rows = medium[name].assign(day=_day(medium[name][column]))
        rows = rows.merge(customers[["customer_id", "signup"]], on="customer_id")
        rows = rows.merge(cancels[["customer_id", "cancel"]], on="customer_id", how="left")
        assert len(rows) > 0, name
        assert (rows.day < end).all(), name
        assert (rows.day >= rows.signup.clip(lower=start)).all(), name
        assert (rows.cancel.isna() | (rows.day < rows.cancel)).all(), name


def test_involuntary_churn_follows_two_failed_attempts(medium: dict[str, pd.DataFrame]) -> None:
    payments = medium["payments"].assign(day=_day(medium["payments"].payment_date))
    cancels = medium["cancellations"].assign(cancel=_day(medium["cancellations"].cancel_date))
    failed = payments[payments.status == "failed"]
    first = failed[failed.attempt == 1].set_index(["customer_id", "day"])
    retry = failed[failed.attempt == 2]
    invol = cancels[cancels.churn_type == "involuntary"]
    assert len(invol) > 0
    assert (invol.reason == "payment_failed").all()
    last_failure = invol.merge(retry, on="customer_id")
    assert len(last_failure) == len(invol)
    assert (last_failure.day + pd.Timedelta(days=1) == last_failure.cancel).all()
    keys = zip(last_failure.customer_id, last_failure.day - pd.Timedelta(days=3), strict=True)
    assert all(key in first.index for key in keys)
    # Conversely every failed retry inside the window ends the subscription the next day.
    end = pd.Timestamp("2025-07-01")
    effective = retry[retry.day + pd.Timedelta(days=1) < end]
    assert set(effective.customer_id) == set(invol.customer_id)
    # Each retry comes three days after a failed first attempt, with the same amount.
    retries = payments[payments.attempt == 2]
    origin = [
        (c, d - pd.Timedelta(days=3)) for c, d in zip(retries.customer_id, retries.day, strict=True)
    ]
    assert all(key in first.index for key in origin)


def test_truth_rows_are_exactly_the_active_customers(medium: dict[str, pd.DataFrame]) -> None:
    dates = observation_dates(MEDIUM)
    assert dates == [date(2025, m, 1) for m in (4, 5, 6, 7)]
    truth = medium["truth"]
    assert sorted(truth.observation_date.unique()) == dates
    customers = medium["customers"].merge(medium["cancellations"], on="customer_id", how="left")
    signup, cancel = _day(customers.signup_date), _day(customers.cancel_date)
    for observed in dates:
        when = pd.Timestamp(observed)
        active = customers[(signup < when) & (cancel.isna() | (cancel > when))]
        rows = truth[truth.observation_date == observed]
        assert rows.customer_id.is_unique
        assert set(rows.customer_id) == set(active.customer_id), observed
    assert truth.true_churn_probability.between(0, 1).all()


def test_observation_dates_follow_config() -> None:
    config = GeneratorConfig(months=12, burn_in_months=3, start_date=date(2025, 1, 1))
    dates = observation_dates(config)
    assert dates[0] == date(2025, 4, 1)
    assert dates[-1] == date(2026, 1, 1)
    assert len(dates) == 10


# ---- churn dynamics and signal --------------------------------------------------------------


def test_churn_rate_is_plausible(medium: dict[str, pd.DataFrame]) -> None:
    labels = _labels(medium, MEDIUM)
    monthly = labels.groupby("T").label.mean()
    assert ((monthly > 0.015) & (monthly < 0.08)).all(), monthly
    types = medium["cancellations"].churn_type.value_counts(normalize=True)
    assert 0.6 <= types["voluntary"] <= 0.92
    assert 0.5 < labels.true_churn_probability.mean() / labels.label.mean() < 1.5


def test_truth_probability_is_informative(medium: dict[str, pd.DataFrame]) -> None:
    labels = _labels(medium, MEDIUM)
    assert labels.label.sum() >= 50
    auc = _auc(labels.true_churn_probability.to_numpy(), labels.label.to_numpy())
    assert 0.7 < auc < 0.98


def test_some_but_not_most_voluntary_churners_ask_first(medium: dict[str, pd.DataFrame]) -> None:
    tickets = medium["tickets"]
    requests = set(tickets.loc[tickets.category == "cancellation_request", "customer_id"])
    cancels = medium["cancellations"]
    voluntary = set(cancels.loc[cancels.churn_type == "voluntary", "customer_id"])
    assert requests <= voluntary
    assert 0.1 < len(requests) / len(voluntary) < 0.5


# ---- callers -------------------------------------------------------------------------------


def test_progress_is_reported_every_month(tmp_path: Path) -> None:
    calls: list[tuple[str, float]] = []
    summary = generate(
        SMALL, tmp_path / "raw", tmp_path / "truth", progress=lambda s, f: calls.append((s, f))
    )
    simulate = [f for s, f in calls if s == "simulate"]
    assert len(simulate) >= SMALL.months
    assert simulate == sorted(simulate) and simulate[-1] == 1.0
    assert summary.data_end == date(2025, 5, 1)
    assert summary.rows["customers"] == SMALL.customers
    assert set(summary.rows) == {*TABLES_BY_NAME, "truth"}


def test_cli_writes_raw_and_truth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--customers", "300", "--months", "4", "--seed", "3", "--start-date", "2024-06-01"]
    assert cli_main([*argv, "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    for spec in RAW_TABLES:
        assert (tmp_path / "raw" / f"{spec.name}.parquet").exists()
    truth = pq.read_table(tmp_path / "truth" / TRUTH_FILE).to_pandas()
    assert truth.observation_date.min() == date(2024, 9, 1)
    assert "events" in out and str(tmp_path / "raw") in out
    assert "\r" in err and "100.0%" in err


# ---- the month-by-month advance ------------------------------------------------------------


def _advanced_world(root: Path, months: int = 2, **kwargs) -> list:
    generate(SMALL, root / "raw", root / "truth")
    return [advance(root, **kwargs) for _ in range(months)]


def _incoming(root: Path, table: str) -> pd.DataFrame:
    files = sorted((root / "incoming" / table).glob("*.parquet"))
    return pd.concat([pd.read_parquet(path) for path in files], ignore_index=True)


def test_advance_continues_the_world_month_by_month_deterministically(tmp_path: Path) -> None:
    first = _advanced_world(tmp_path / "a")
    _advanced_world(tmp_path / "b")
    assert [r.month for r in first] == [date(2025, 5, 1), date(2025, 6, 1)]
    assert [r.observation_date for r in first] == [date(2025, 6, 1), date(2025, 7, 1)]
    for path in (tmp_path / "a" / "incoming").rglob("*.parquet"):
        other = tmp_path / "b" / path.relative_to(tmp_path / "a")
        assert pq.read_table(path).equals(pq.read_table(other)), path.name
        assert validate_file(path).name == path.parent.name, "the sensor accepts it"
    assert not list((tmp_path / "a" / "incoming").rglob("*.part"))
    root = tmp_path / "a"
    events = _incoming(root, "events")
    assert _day(events.event_time).min() == pd.Timestamp("2025-05-01")
    assert _day(events.event_time).max() == pd.Timestamp("2025-06-30")
    raw_events = pq.read_table(root / "raw" / "events.parquet").to_pandas()
    assert not set(events.event_id) & set(raw_events.event_id), "ids continue"
    newcomers = _incoming(root, "customers")
    assert len(newcomers) > 0 and not set(newcomers.customer_id) & set(
        pq.read_table(root / "raw" / "customers.parquet").to_pandas().customer_id
    )
    truth = pq.read_table(root / "truth" / TRUTH_FILE).to_pandas()
    assert str(truth.observation_date.max()) == "2025-07-01"
    rates = truth.groupby("observation_date").true_churn_probability.mean()
    assert rates.max() < 2 * rates.min(), "a stationary world stays stationary"


def test_a_contact_lowers_the_voluntary_hazard_by_a_known_effect(tmp_path: Path) -> None:
    generate(SMALL, tmp_path / "raw", tmp_path / "truth")
    truth = pq.read_table(tmp_path / "truth" / TRUTH_FILE).to_pandas()
    newest = truth[truth.observation_date == truth.observation_date.max()]
    risky = newest.nlargest(60, "true_churn_probability")
    scores = newest.assign(contact=newest.customer_id.isin(risky.customer_id))
    scores[["customer_id", "contact"]].to_parquet(tmp_path / "scores.parquet")
    result = advance(tmp_path, contacts=tmp_path / "scores.parquet")
    effect = pq.read_table(tmp_path / "truth" / CONTACT_EFFECT_FILE).to_pandas()
    assert result.contacted == len(effect) == 60
    assert set(effect.customer_id) == set(risky.customer_id)
    assert (effect.observation_date.astype(str) == "2025-05-01").all()
    assert np.allclose(effect.true_effect, effect.p_untreated - effect.p_treated)
    assert (effect.true_effect > 0).all()
    assert np.allclose(
        effect.p_untreated,
        risky.set_index("customer_id").loc[effect.customer_id, "true_churn_probability"],
    )
    assert 0.02 < result.mean_true_effect < 0.15, "a few points of churn reduction"


def test_contacts_and_state_errors_name_the_file_and_column(tmp_path: Path) -> None:
    with pytest.raises(StateError, match=r"state\.json: no saved generator state"):
        advance(tmp_path)
    generate(SMALL, tmp_path / "raw", tmp_path / "truth")
    pd.DataFrame({"customer_id": ["C0000001"]}).to_csv(tmp_path / "list.csv", index=False)
    with pytest.raises(ValueError, match=r"list\.csv: no 'contact' column"):
        advance(tmp_path, contacts=tmp_path / "list.csv")
    pd.DataFrame({"customer_id": ["X1"], "contact": [True]}).to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(ValueError, match=r"x\.csv: 1 customer_id.*'X1'"):
        advance(tmp_path, contacts=tmp_path / "x.csv")


def test_a_usage_drop_removes_the_regions_events_and_nothing_else(tmp_path: Path) -> None:
    _advanced_world(tmp_path / "plain", months=1)
    _advanced_world(tmp_path / "drop", months=1, shift=Shift("usage_drop", pct=90.0))
    customers = pq.read_table(tmp_path / "plain" / "raw" / "customers.parquet").to_pandas()
    customers = pd.concat([customers, _incoming(tmp_path / "plain", "customers")])
    north = set(customers.customer_id[customers.region == "north"])
    plain, drop = _incoming(tmp_path / "plain", "events"), _incoming(tmp_path / "drop", "events")
    in_north = plain.customer_id.isin(north)
    assert drop.customer_id.isin(north).sum() < 0.2 * in_north.sum()
    assert (~drop.customer_id.isin(north)).sum() == (~in_north).sum()
    assert next((tmp_path / "drop" / "incoming" / "events").iterdir()).name == (
        "events_2025-05_advance-usage_drop.parquet"
    )


def test_the_advance_cli_prints_the_files(tmp_path: Path, capsys) -> None:
    generate(SMALL, tmp_path / "raw", tmp_path / "truth")
    assert advance_main(["--home", str(tmp_path), "--shift", "price_rise", "--pct", "10"]) == 0
    out, err = capsys.readouterr()
    assert "customers_2025-05_advance-price_rise.parquet" in out
    assert "the snapshot that sees it is 2025-06-01" in err
    assert advance_main(["--home", str(tmp_path / "nowhere")]) == 2
