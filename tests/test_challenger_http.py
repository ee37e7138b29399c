"""Champion + challenger in one Bento, served by a real ``bentoml serve``: shadow, canary, off
with rate limits. The challenger is the candidate that lost to the champion (another
estimator, same features), planted in the store for this module and removed afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from churn import registry
from churn.modeling.spec import encode_records
from churn.monitoring.prediction_log import CLOSED_SUFFIX
from serving.challenger import canary_bucket
from tests.challenger_support import plant_challenger, remove_challenger
from tests.serving_support import (
    Server,
    environment,
    feature_rows,
    request_features,
    serving,
    start,
)

pytestmark = pytest.mark.slow

CANARY_FRACTION = 0.2
KEYS = ("limit-key-1", "limit-key-2")


@pytest.fixture(scope="module")
def bento(materialized) -> Iterator[dict]:
    import bentoml

    from churn_assets.defs.model.bento import build_bento

    champion, challenger = plant_challenger(materialized)
    version = f"{champion.split(':')[1]}-vs-{challenger.split(':')[1]}"
    tag = build_bento(champion, version, challenger)
    try:
        yield {"tag": tag, "champion": champion, "challenger": challenger}
    finally:
        bentoml.bentos.delete(tag)
        remove_challenger(champion, challenger)


@pytest.fixture(scope="module")
def servers(bento, tmp_path_factory) -> Iterator[dict[str, Server]]:
    root = tmp_path_factory.mktemp("challenger-http")
    settings = {
        "shadow": {},
        "canary": {"CHURN_SERVING_MODE": "canary", "CHURN_CANARY_FRACTION": str(CANARY_FRACTION)},
        "limited": {
            "CHURN_SERVING_MODE": "off",
            "CHURN_RATE_LIMIT": "1/m",
            "CHURN_RATE_BURST": "3",
        },
    }
    started = {}
    for name, env in settings.items():
        unset = dict.fromkeys(("CHURN_SERVING_MODE", "CHURN_CANARY_FRACTION", "CHURN_RATE_LIMIT"))
        with environment(**(unset | env)):
            keys = ",".join(KEYS) if name == "limited" else None
            started[name] = start(bento["tag"], root / name, keys)
    with serving(started):
        yield started


@pytest.fixture(scope="module")
def rows(materialized) -> list[dict]:
    return feature_rows(materialized.warehouse, 20)


@pytest.fixture(scope="module")
def models(bento) -> dict:
    return {role: registry.load_model(bento[role]) for role in ("champion", "challenger")}


def offline(model, rows: list[dict]) -> np.ndarray:
    return model.model.predict_proba(encode_records(rows, model.model.specs))


def body(row: dict, customer_id: str | None = None) -> dict:
    return {"customer_id": customer_id or row["customer_id"], "features": request_features(row)}


def logged(server: Server) -> list[dict]:
    server.stop()
    files = list((server.home / "prediction_logs").glob(f"*/*{CLOSED_SUFFIX}"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


def test_shadow_answers_with_the_champion_and_logs_both(servers, rows, models, bento):
    url = servers["shadow"].url
    card = httpx.post(f"{url}/model", json={}).json()
    assert card["serving_mode"] == "shadow"
    assert [(m["role"], m["model_tag"]) for m in card["models"]] == [
        ("champion", bento["champion"]),
        ("challenger", bento["challenger"]),
    ]
    champion_p = offline(models["champion"], rows)
    challenger_p = offline(models["challenger"], rows)
    assert np.abs(champion_p - challenger_p).max() > 1e-3  # two genuinely different models
    for i, row in enumerate(rows[:8]):
        answer = httpx.post(f"{url}/score", json=body(row)).json()
        assert answer["churn_probability"] == pytest.approx(champion_p[i], abs=1e-9)
        assert answer["model_role"] == "champion"
        assert answer["model_version"] == models["champion"].version
    batch = httpx.post(f"{url}/score_batch", json={"customers": [body(r) for r in rows]}).json()
    assert [s["model_role"] for s in batch["scores"]] == ["champion"] * len(rows)
    records = logged(servers["shadow"])
    assert len(records) == 8 + len(rows)
    expected = {r["customer_id"]: (champion_p[i], challenger_p[i]) for i, r in enumerate(rows)}
    for record in records:
        champion, challenger = expected[record["customer_id"]]
        assert record["model_role"] == "champion"
        assert record["churn_probability"] == record["champion_probability"]
        assert record["champion_probability"] == pytest.approx(champion, abs=1e-9)
        assert record["challenger_probability"] == pytest.approx(challenger, abs=1e-9)
        assert record["challenger_version"] == models["challenger"].version


def test_canary_splits_customers_stably(servers, rows, models):
    url = servers["canary"].url
    card = httpx.post(f"{url}/model", json={}).json()
    assert card["serving_mode"] == "canary" and card["canary_fraction"] == CANARY_FRACTION
    ids = [f"canary-{i:05d}" for i in range(5000)]
    features = {i: rows[i % len(rows)] for i in range(len(ids))}
    roles: dict[str, str] = {}
    with httpx.Client(base_url=url, timeout=60) as client:
        for start_at in range(0, len(ids), 1000):
            chunk = range(start_at, start_at + 1000)
            response = client.post(
                "/score_batch", json={"customers": [body(features[i], ids[i]) for i in chunk]}
            )
            assert response.status_code == 200, response.text
            for i, score in zip(chunk, response.json()["scores"], strict=True):
                roles[ids[i]] = score["model_role"]
                version = models[score["model_role"]].version
                assert score["model_version"] == version
        share = sum(role == "challenger" for role in roles.values()) / len(ids)
        assert abs(share - CANARY_FRACTION) <= 0.02, share
        # /score routes each customer to the same model as the batch did, every time
        for i in range(300):
            answer = client.post("/score", json=body(features[i], ids[i])).json()
            assert answer["model_role"] == roles[ids[i]]
            assert (canary_bucket(ids[i]) < CANARY_FRACTION) == (roles[ids[i]] == "challenger")
            expected = offline(models[roles[ids[i]]], [features[i]])[0]
            assert answer["churn_probability"] == pytest.approx(expected, abs=1e-9)
    records = logged(servers["canary"])
    assert len(records) == 5300
    assert all(r["champion_probability"] is not None for r in records)
    assert all(r["challenger_probability"] is not None for r in records)


def test_rate_limit_is_429_with_retry_after_before_any_model_work(servers, rows):
    url = servers["limited"].url
    first, second = ({"Authorization": f"Bearer {key}"} for key in KEYS)
    statuses = [httpx.post(f"{url}/score", json=body(rows[0]), headers=first) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert "model_role" not in statuses[0].json()  # off: the score object is unchanged
    limited = statuses[3]
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["detail"][0]["type"] == "rate_limited"
    assert httpx.post(f"{url}/score", json=body(rows[0]), headers=second).status_code == 200
    assert all(httpx.get(f"{url}/readyz").status_code == 200 for _ in range(10))
    assert httpx.post(f"{url}/score", json=body(rows[0])).status_code == 401  # auth first
    records = logged(servers["limited"])
    assert len(records) == 4  # the refused request never reached the model or the log
    assert KEYS[0] not in servers["limited"].log.read_text()
