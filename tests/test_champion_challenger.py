"""Champion and challenger: the paired comparison, canary routing, rate limits (library level),
and promotion end to end through model_performance's check and promote_challenger_job."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pytest

from churn import registry
from churn.monitoring.challenger import compare, paired_bootstrap, rank_auc
from churn.registry import roles
from serving.challenger import canary_bucket, routed_to_challenger
from serving.config import (
    CANARY,
    OFF,
    SHADOW,
    ServingConfigError,
    configured_limits,
    parse_limit,
    serving_mode,
)
from serving.ratelimit import RateLimitMiddleware
from tests.challenger_support import plant_challenger, remove_challenger
from tests.graph import GraphRun, materialize_graph

# --- the paired comparison ------------------------------------------------------------------


def planted(n: int = 3000, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(int)
    signal = y + rng.normal(0, 1.0, n)  # AUC ~0.76
    return y, signal


def test_rank_auc_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    y, scores = planted(500)
    scores = np.round(scores, 1)  # ties
    assert rank_auc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)


def test_a_planted_better_challenger_is_promoted():
    y, champion = planted()
    rng = np.random.default_rng(2)
    challenger = y + rng.normal(0, 0.6, len(y))  # clearly sharper
    result = compare("logged", "v1", "v2", y, champion, challenger, n_boot=300)
    assert result.recommend_promotion, result.reason
    assert result.ci_low > 0 and result.auc_delta > 0.05
    assert "promote" in result.reason


def test_an_equal_challenger_is_not_promoted():
    y, champion = planted()
    same = compare("logged", "v1", "v2", y, champion, champion.copy(), n_boot=300)
    assert not same.recommend_promotion
    assert same.auc_delta == 0 and same.ci_low == 0 and same.ci_high == 0
    # equally good, different noise: the interval straddles zero
    rng = np.random.default_rng(3)
    twin = y + rng.normal(0, 1.0, len(y))
    equal = compare("logged", "v1", "v2", y, champion, twin, n_boot=300)
    assert not equal.recommend_promotion
    assert equal.ci_low < 0 < equal.ci_high


def test_too_few_rows_never_promote():
    y, champion = planted(50)
    result = compare("logged", "v1", "v2", y, champion, y.astype(float), min_rows=100)
    assert not result.recommend_promotion and result.auc_delta is None


def test_paired_interval_is_narrower_than_unpaired_intuition():
    y, champion = planted()
    challenger = champion + np.random.default_rng(4).normal(0, 0.1, len(y))
    delta, low, high, _ = paired_bootstrap(y, champion, challenger, n_boot=300)
    assert low <= delta <= high and high - low < 0.02


# --- canary routing and modes ---------------------------------------------------------------


def test_canary_split_is_stable_and_near_the_fraction():
    ids = [f"customer-{i:05d}" for i in range(5000)]
    for fraction in (0.05, 0.2, 0.5):
        routed = routed_to_challenger(ids, fraction)
        assert abs(routed.mean() - fraction) <= 0.02
        assert (routed_to_challenger(ids, fraction) == routed).all()  # same answer twice
    assert canary_bucket("c1") == canary_bucket("c1") != canary_bucket("c2")
    # a customer on the challenger at 10% stays there at 20%: ramping up only adds customers
    assert (routed_to_challenger(ids, 0.2) >= routed_to_challenger(ids, 0.1)).all()


def test_serving_modes():
    assert serving_mode(True, {}).mode == SHADOW
    assert serving_mode(False, {}).mode == OFF
    canary = serving_mode(True, {"CHURN_SERVING_MODE": "canary", "CHURN_CANARY_FRACTION": "0.3"})
    assert canary.mode == CANARY and canary.canary_fraction == 0.3
    assert serving_mode(True, {"CHURN_SERVING_MODE": "OFF"}).mode == OFF
    for env in (
        {"CHURN_SERVING_MODE": "blue-green"},
        {"CHURN_SERVING_MODE": "canary", "CHURN_CANARY_FRACTION": "1.5"},
        {"CHURN_SERVING_MODE": "canary", "CHURN_CANARY_FRACTION": "ten"},
    ):
        with pytest.raises(ServingConfigError):
            serving_mode(True, env)
    with pytest.raises(ServingConfigError, match="needs a challenger"):
        serving_mode(False, {"CHURN_SERVING_MODE": "shadow"})


# --- rate limits ----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def call(app, path: str, key: str | None = None, client: str = "10.0.0.1") -> tuple[int, dict]:
    sent: list[dict] = []
    headers = [(b"authorization", f"Bearer {key}".encode())] if key else []
    scope = {"type": "http", "path": path, "headers": headers, "client": (client, 1234)}

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = sent[0]
    return start["status"], {k.decode(): v.decode() for k, v in start.get("headers", [])}


async def ok_app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def test_parse_limits():
    assert parse_limit("100/s") == parse_limit("6000/m")
    assert parse_limit("10/s", "25").burst == 25
    assert parse_limit("1/h").burst == 1
    limits = configured_limits(
        {"CHURN_RATE_LIMIT": "5/s", "CHURN_RATE_LIMIT_KEYS": "big=100/s:200, tiny=1/m"}
    )
    assert limits.default.rate == 5 and len(limits.per_key) == 2
    assert not configured_limits({}).enabled
    with pytest.raises(ValueError):
        parse_limit("fast")


def test_token_bucket_429_retry_after_and_open_paths():
    clock = Clock()
    limits = configured_limits(
        {"CHURN_RATE_LIMIT": "2/s", "CHURN_RATE_BURST": "3", "CHURN_RATE_LIMIT_KEYS": "big=50/s"}
    )
    app = RateLimitMiddleware(ok_app, limits, clock=clock, keys=(b"alpha", b"beta", b"big"))
    assert [call(app, "/score", "alpha")[0] for _ in range(3)] == [200, 200, 200]
    status, headers = call(app, "/score", "alpha")
    assert status == 429 and headers["retry-after"] == "1"
    assert call(app, "/score", "beta")[0] == 200  # its own bucket
    assert all(call(app, "/score", "big")[0] == 200 for _ in range(40))  # its override
    assert all(call(app, path, "alpha")[0] == 200 for path in ("/healthz", "/readyz", "/metrics"))
    clock.now += 0.5  # one token back at 2/s
    assert call(app, "/score", "alpha")[0] == 200
    assert call(app, "/score", "alpha")[0] == 429
    assert app.limited == 2


def test_without_keys_the_limit_is_per_client_address():
    app = RateLimitMiddleware(ok_app, configured_limits({"CHURN_RATE_LIMIT": "1/m"}), Clock())
    assert call(app, "/score", client="10.0.0.1")[0] == 200
    assert call(app, "/score", client="10.0.0.1")[0] == 429
    assert call(app, "/score", client="10.0.0.2")[0] == 200
    status, headers = call(app, "/score", client="10.0.0.2")
    assert status == 429 and int(headers["retry-after"]) == 60


# --- promotion end to end -------------------------------------------------------------------


@pytest.fixture
def challenger_in_store(materialized: GraphRun):
    champion, challenger = plant_challenger(materialized)
    try:
        yield champion, challenger
    finally:
        remove_challenger(champion, challenger)


def plant_logged_pairs(
    warehouse: Path, champion: str, challenger: str, better: bool, rows: int = 1500
) -> None:
    """Logged /score_events rows on matured (customer, date) pairs with planted scores: the
    champion's are noisy; the challenger's are sharper (``better``) or the same."""
    con = duckdb.connect(str(warehouse))
    try:
        labels = con.execute(
            "SELECT customer_id, observation_date, CAST(churned AS INTEGER) FROM churn_labels "
            "WHERE churned IS NOT NULL ORDER BY hash(customer_id, observation_date) LIMIT ?",
            [rows],
        ).fetchall()
        rng = np.random.default_rng(5)
        y = np.array([label for _, _, label in labels])
        champion_p = 1 / (1 + np.exp(-(y + rng.normal(0, 1.5, len(y)))))
        challenger_p = (
            1 / (1 + np.exp(-(2 * y + rng.normal(0, 0.8, len(y))))) if better else champion_p
        )
        champion_v, challenger_v = champion.split(":")[1], challenger.split(":")[1]
        con.executemany(
            "INSERT INTO prediction_logs (request_id, logged_at, route, model_version, "
            "customer_id, churn_probability, observation_date, model_role, champion_version, "
            "champion_probability, challenger_version, challenger_probability) "
            "VALUES (?, now(), '/score_events', ?, ?, ?, ?, 'champion', ?, ?, ?, ?)",
            [
                (
                    f"planted-{i}",
                    champion_v,
                    cid,
                    float(champion_p[i]),
                    day,
                    champion_v,
                    float(champion_p[i]),
                    challenger_v,
                    float(challenger_p[i]),
                )
                for i, (cid, day, _) in enumerate(labels)
            ],
        )
    finally:
        con.close()


def private_home(materialized: GraphRun, tmp_path: Path) -> Path:
    shutil.copy(materialized.warehouse, tmp_path / "warehouse.duckdb")
    return tmp_path


def promotion_check(run: GraphRun) -> dg.AssetCheckEvaluation:
    return run.checks()["model_performance:challenger_promotion"]


def run_promotion(
    home: Path, request: dg.RunRequest, raise_on_error: bool = True
) -> dg.ExecuteInProcessResult:
    from churn_assets.defs.monitoring.promotion import promote_challenger_job
    from churn_assets.resources import WarehouseResource

    config = request.run_config
    config["ops"]["promote_challenger"]["config"]["rebuild_bento"] = False
    return promote_challenger_job.execute_in_process(
        run_config=config,
        resources={"warehouse": WarehouseResource(path=str(home / "warehouse.duckdb"))},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=raise_on_error,
    )


def test_equal_challenger_is_not_promoted(materialized, challenger_in_store, tmp_path):
    from churn_assets.defs.monitoring.promotion import promotion_request

    champion, challenger = challenger_in_store
    home = private_home(materialized, tmp_path)
    plant_logged_pairs(home / "warehouse.duckdb", champion, challenger, better=False)
    run = materialize_graph(home, "model_performance")
    check = promotion_check(run)
    assert check.passed, check.description
    assert check.metadata["recommend_promotion"].value is False
    evidence = check.metadata["evidence"].value
    assert evidence["source"] == "logged" and evidence["auc_delta"] == 0
    assert promotion_request(check.metadata) is None
    assert roles.champion_tag() == champion


def test_better_challenger_is_promoted_and_recorded(materialized, challenger_in_store, tmp_path):
    from churn.registry import history
    from churn_assets.defs.monitoring.promotion import promotion_request

    champion, challenger = challenger_in_store
    home = private_home(materialized, tmp_path)
    plant_logged_pairs(home / "warehouse.duckdb", champion, challenger, better=True)
    run = materialize_graph(home, "model_performance")
    check = promotion_check(run)
    assert not check.passed and check.metadata["recommend_promotion"].value is True
    evidence = check.metadata["evidence"].value
    assert evidence["ci_low"] > 0 and evidence["rows"] == 1500, evidence
    request = promotion_request(check.metadata)
    assert request is not None and challenger in request.run_key
    result = run_promotion(home, request)
    assert result.success
    assert roles.champion_tag() == challenger and roles.challenger_tag() is None
    assert registry.latest_tag() == challenger
    store = {str(m.tag): roles.role_of(m) for m in roles.stored_models()}
    assert store[champion] == roles.RETIRED
    reported = [
        e.event_specific_data.materialization
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
    ]
    assert reported[0].metadata["model_tag"].value == challenger
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        history = {row["model_tag"]: row for row in history.history(con)}
    assert history[champion]["role"] == roles.RETIRED and history[champion]["retired_at"]
    # the same request again is stale (that challenger is the champion now): refused
    assert not run_promotion(home, request, raise_on_error=False).success
