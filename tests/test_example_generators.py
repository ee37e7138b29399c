"""The raw event-log examples (``examples/event_logs.py``): readable, shaped as documented, seeded.

Small sizes, no pipeline run: these check the files a user would point ``CHURN_SOURCE`` at, read
the way DuckDB reads them, and the churn stories they must tell (cancellations and lapses, and
nothing of a user's after their ``Cancellation Confirmation``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import duckdb
import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
STREAMING_PAGES = {
    "NextSong", "Thumbs Up", "Thumbs Down", "Add to Playlist", "Add Friend", "Home", "Settings",
    "Help", "Error", "Roll Advert", "Upgrade", "Submit Upgrade", "Downgrade", "Submit Downgrade",
    "Logout", "Cancel", "Cancellation Confirmation",
}  # fmt: skip
MS_2024 = 1_704_067_200_000  # 2024-01-01T00:00:00Z in epoch milliseconds
MS_2025 = 1_735_689_600_000  # 2025-01-01T00:00:00Z
DAY_MS = 86_400_000


def _load_event_logs():
    """The examples folder is scripts, not a package: load the module from its file."""
    spec = importlib.util.spec_from_file_location("event_logs", EXAMPLES / "event_logs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


event_logs = _load_event_logs()


@pytest.fixture(scope="module")
def streaming(tmp_path_factory) -> Path:
    return event_logs.make_streaming(tmp_path_factory.mktemp("streaming"), users=200, seed=3)


@pytest.fixture(scope="module")
def purchases(tmp_path_factory) -> Path:
    return event_logs.make_purchases(tmp_path_factory.mktemp("purchases"), customers=400, seed=3)


@pytest.fixture(scope="module")
def con(streaming: Path, purchases: Path) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    # File names go through the relation API, never into SQL text.
    connection.read_json(str(streaming / "events.jsonl"), format="newline_delimited").create(
        "events"
    )
    connection.read_csv(str(streaming / "users.csv")).create("users")
    connection.read_csv(str(purchases / "purchases.csv")).create("purchases")
    return connection


def _schema(con: duckdb.DuckDBPyConnection, view: str) -> dict[str, str]:
    return {row[0]: row[1] for row in con.execute(f"describe {view}").fetchall()}


def test_streaming_files_parse_with_the_documented_columns(con):
    assert _schema(con, "events") == {
        "ts": "BIGINT",
        "userId": "BIGINT",
        "sessionId": "BIGINT",
        "page": "VARCHAR",
        "level": "VARCHAR",
        "length": "DOUBLE",
    }
    assert list(_schema(con, "users")) == [
        "userId",
        "gender",
        "registration",
        "location",
        "userAgent",
    ]
    pages = {row[0] for row in con.execute("select distinct page from events").fetchall()}
    assert pages <= STREAMING_PAGES
    assert {"NextSong", "Thumbs Down", "Error", "Roll Advert", "Submit Downgrade"} <= pages
    levels = {row[0] for row in con.execute("select distinct level from events").fetchall()}
    assert levels == {"free", "paid"}


def test_streaming_times_are_epoch_milliseconds_within_the_year(con):
    low, high = con.execute("select min(ts), max(ts) from events").fetchone()
    assert MS_2024 <= low < high < MS_2025
    late_signups = con.execute(
        """select count(*) from users u
           join (select userId, min(ts) as first_ts from events group by 1) e using (userId)
           where u.registration > e.first_ts or u.registration < ?""",
        [MS_2024 - 2 * 365 * DAY_MS],
    ).fetchone()[0]
    assert late_signups == 0, "every registration is an epoch-ms time before the first event"
    assert con.execute(
        "select count(*) from events where userId not in (select userId from users)"
    ).fetchone() == (0,)


def test_length_only_on_songs(con):
    wrong = con.execute(
        """select count(*) from events
           where (page = 'NextSong') <> (length is not null) or length <= 0"""
    ).fetchone()[0]
    assert wrong == 0


def test_some_users_cancel_and_some_lapse(con):
    cancelled = con.execute(
        "select count(distinct userId) from events where page = 'Cancellation Confirmation'"
    ).fetchone()[0]
    lapsed = con.execute(
        """select count(*) from (
             select userId, max(ts) as last_ts,
                    bool_or(page = 'Cancellation Confirmation') as cancelled
             from events group by 1)
           where not cancelled and last_ts < ?""",
        [MS_2025 - 30 * DAY_MS],
    ).fetchone()[0]
    users = con.execute("select count(*) from users").fetchone()[0]
    assert 0.05 * users < cancelled < 0.8 * users
    assert 0.05 * users < lapsed < 0.8 * users


def test_nothing_follows_a_cancellation_confirmation(con):
    after = con.execute(
        """with gone as (
             select userId, min(ts) as gone_at, count(*) as confirmations from events
             where page = 'Cancellation Confirmation' group by 1)
           select count(*) filter (where e.ts > g.gone_at),
                  count(distinct e.userId) filter (where g.confirmations > 1)
           from events e join gone g using (userId)"""
    ).fetchone()
    assert after == (0, 0)
    # The Cancel page is seen only in the confirming session, just before the confirmation.
    unpaired = con.execute(
        """select count(*) from events c
           where c.page = 'Cancel' and not exists (
             select 1 from events x where x.page = 'Cancellation Confirmation'
             and x.sessionId = c.sessionId and x.ts >= c.ts)"""
    ).fetchone()[0]
    assert unpaired == 0


def test_purchases_parse_as_a_bare_purchase_log(con):
    assert _schema(con, "purchases") == {
        "cust": "VARCHAR",
        "bought_on": "DATE",
        "quantity": "BIGINT",
        "amount": "DOUBLE",
    }
    first, last, bad = con.execute(
        """select min(bought_on), max(bought_on),
                  count(*) filter (where quantity < 1 or amount <= 0)
           from purchases"""
    ).fetchone()
    assert (first.isoformat(), bad) == ("2023-06-01", 0)
    assert last.isoformat() <= "2025-05-31"
    lapsed, customers = con.execute(
        """select count(*) filter (where last_buy < date '2025-05-31' - 90), count(*)
           from (select cust, max(bought_on) as last_buy from purchases group by 1)"""
    ).fetchone()
    assert customers == 400
    assert 0.2 * customers < lapsed < 0.95 * customers


def test_generators_are_deterministic_per_seed(tmp_path, streaming, purchases):
    again = event_logs.make_streaming(tmp_path / "s1", users=200, seed=3)
    other = event_logs.make_streaming(tmp_path / "s2", users=200, seed=4)
    for name in ("events.jsonl", "users.csv"):
        assert (again / name).read_bytes() == (streaming / name).read_bytes()
    assert (other / "events.jsonl").read_bytes() != (streaming / "events.jsonl").read_bytes()
    bought = event_logs.make_purchases(tmp_path / "p1", customers=400, seed=3)
    assert (bought / "purchases.csv").read_bytes() == (purchases / "purchases.csv").read_bytes()


@pytest.mark.parametrize("name", ["streaming", "purchases"])
def test_source_yaml_is_the_committed_one_and_points_at_the_files(name, streaming, purchases):
    folder = {"streaming": streaming, "purchases": purchases}[name]
    written = (folder / "source.yaml").read_text()
    assert written == (EXAMPLES / name / "source.yaml").read_text()
    config = yaml.safe_load(written)
    assert config["shape"] == "events"
    for table in config["tables"].values():
        assert (folder / table["path"]).is_file()
    assert config["tables"]["events"]["columns"]["event_time"] in {"ts", "bought_on"}
