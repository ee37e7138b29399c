"""The service in-process through ``ChurnService.to_asgi()``: real model, real warehouse rows.

Every refusal must be a 4xx whose body names the offending field; nothing a client sends may
produce a 5xx.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from churn.monitoring.prediction_log import CLOSED_SUFFIX
from serving.config import load_serving_settings
from tests.serving_support import (
    feature_rows,
    histories,
    request_features,
)

KEY = "test-key-123"


@pytest.fixture(scope="module")
def rows(materialized) -> list[dict]:
    return feature_rows(materialized.warehouse, 12)


@pytest.fixture(scope="module")
def log_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("asgi-home")


class KeyedApp:
    """The service app behind :class:`~serving.auth.ApiKeyMiddleware` with keys a test can set.

    The service's keys are a setting fixed when the app is built, and BentoML's metrics registry
    is process-global, so a second ``to_asgi()`` app with keys cannot be built in this process:
    the ``secured`` fixture puts the same middleware, with keys, in front of the one app."""

    def __init__(self, app) -> None:
        self.app = app
        self.keys: tuple[bytes, ...] = ()

    async def __call__(self, scope, receive, send) -> None:
        from serving.auth import ApiKeyMiddleware

        await ApiKeyMiddleware(self.app, keys=self.keys)(scope, receive, send)


@pytest.fixture(scope="module")
def client(materialized, log_home, rows):
    """Auth off; prediction logs go to a private CHURN_HOME. Its finalizer shuts the app down
    (the lifespan publishes the log file) and checks what the log holds."""
    import serving.service as service

    settings = load_serving_settings({"CHURN_HOME": str(log_home)})
    assert not service.SETTINGS.api_keys, "this module serves the app without keys"
    with pytest.MonkeyPatch.context() as patch:
        # The service reads its settings once, at import (perhaps by another test module):
        # this module's copy writes its prediction log under its own home.
        patch.setattr(service, "SETTINGS", settings)
        test_client = TestClient(KeyedApp(service.ChurnService.to_asgi()))
        test_client.__enter__()
    try:
        yield test_client
        _score_on_every_route(test_client, materialized, rows)
    finally:
        test_client.__exit__(None, None, None)  # lifespan shutdown: the writer publishes its file
    _published_log_holds_the_answers(log_home, rows)


@pytest.fixture
def secured(client):
    """The same app with keys configured (see :class:`KeyedApp`)."""
    client.app.keys = (b"other-key", KEY.encode())
    try:
        yield client
    finally:
        client.app.keys = ()


def body(row: dict, **extra) -> dict:
    return {"customer_id": row["customer_id"], "features": request_features(row)} | extra


def offline_probabilities(rows: list[dict]) -> np.ndarray:
    from churn.modeling.spec import encode_records
    from churn.registry import load_model

    champion = load_model()
    return champion.model.predict_proba(encode_records(rows, champion.model.specs))


def assert_names(response, *location: str | int) -> None:
    """A 4xx whose JSON detail points at ``location`` (a prefix of some error's loc)."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    detail = response.json()["detail"]
    locations = [tuple(item["loc"]) for item in detail]
    assert any(loc[: len(location)] == location for loc in locations), locations


# --- valid requests -------------------------------------------------------------------------


def test_tier_and_label_are_one_decision_even_at_a_requested_threshold(client, rows):
    """``risk_tier == 'high'`` exactly when ``churn_label == 1``, at the card's threshold and
    at a request's own: the request's threshold moves the high cut with the label. A high
    customer's reasons only raise the risk, and every reason reads as plain text."""
    customers = [body(row) for row in rows]
    default = client.post("/score_batch", json={"customers": customers}).json()["scores"]
    probabilities = sorted(score["churn_probability"] for score in default)
    middle = probabilities[len(probabilities) // 2]  # half the rows high, half not
    for threshold in (None, middle, 0.0, 1.0):
        extra = {} if threshold is None else {"threshold": threshold}
        response = client.post("/score_batch", json={"customers": customers} | extra)
        assert response.status_code == 200, response.text
        scores = response.json()["scores"]
        for score in scores:
            assert (score["risk_tier"] == "high") == (score["churn_label"] == 1), score
            assert score["churn_label"] == int(score["churn_probability"] >= score["threshold"])
            assert score["reasons"] and all(r["text"] for r in score["reasons"])
            if score["risk_tier"] == "high":
                assert all(reason["contribution"] > 0 for reason in score["reasons"][1:])
        if threshold == middle:
            assert {s["risk_tier"] for s in scores} >= {"high"}
            assert len({s["churn_label"] for s in scores}) == 2
    one = client.post("/score", json=body(rows[0], threshold=middle)).json()
    assert (one["risk_tier"] == "high") == (one["churn_label"] == 1)


def test_score_matches_the_model_and_the_contract(client, rows):
    from serving.service import CARD

    response = client.post("/score", json=body(rows[0]))
    assert response.status_code == 200, response.text
    score = response.json()
    survival = {"p_churn_30d", "p_churn_90d", "p_churn_180d", "expected_lifetime_months", "clv"}
    assert {"p_churn_30d", "expected_lifetime_months", "clv"} <= set(score)  # time to churn
    assert set(score) - survival == {
        "customer_id",
        "churn_probability",
        "churn_label",
        "threshold",
        "risk_tier",
        "reasons",
        "model_version",
        "feature_order",
    }
    assert score["customer_id"] == rows[0]["customer_id"]
    assert score["churn_probability"] == pytest.approx(offline_probabilities(rows[:1])[0], 1e-12)
    assert score["threshold"] == CARD["thresholds"]["decision"]
    assert score["churn_label"] == int(score["churn_probability"] >= score["threshold"])
    cuts = CARD["risk_tiers"]
    expected_tier = (
        "high"
        if score["churn_probability"] >= score["threshold"]
        else "medium"
        if score["churn_probability"] >= cuts["low_medium"]
        else "low"
    )
    assert score["risk_tier"] == expected_tier
    assert all(reason["text"] for reason in score["reasons"])
    assert score["feature_order"] == CARD["feature_order"]
    assert score["model_version"] in client.post("/model", json={}).json()["model_tag"]


def test_reasons_are_the_top_three_contributions(client, rows):
    from churn.modeling.spec import encode_records
    from churn.registry import load_model

    score = client.post("/score", json=body(rows[1])).json()
    model = load_model().model
    contributions = model.contributions(encode_records([rows[1]], model.specs))[0]
    if score["risk_tier"] == "high":  # only what raises the risk, strongest first
        order = [j for j in np.argsort(-contributions, kind="stable")[:3] if contributions[j] > 0]
        order = order or [int(np.argmax(contributions))]
    else:  # the strongest pushes either way
        order = np.argsort(-np.abs(contributions), kind="stable")[:3]
    assert [r["feature"] for r in score["reasons"]] == [model.feature_names[j] for j in order]
    for reason in score["reasons"]:
        j = model.feature_names.index(reason["feature"])
        assert reason["contribution"] == pytest.approx(contributions[j], abs=1e-12)
        assert reason["value"] == request_features(rows[1])[reason["feature"]]


def test_requested_threshold_sets_the_label(client, rows):
    low = client.post("/score", json=body(rows[0], threshold=0.0)).json()
    high = client.post("/score", json=body(rows[0], threshold=1.0)).json()
    assert (low["threshold"], low["churn_label"]) == (0.0, 1)
    assert (high["threshold"], high["churn_label"]) == (1.0, int(high["churn_probability"] >= 1))


def test_batch_keeps_order_and_uses_one_model_call(client, rows, monkeypatch):
    from churn.registry import load_model

    reversed_rows = rows[::-1]
    expected = offline_probabilities(reversed_rows)
    model_class = type(load_model().model)
    original = model_class.contributions
    calls: list[int] = []

    def counting(self, X):
        calls.append(len(X))
        return original(self, X)

    monkeypatch.setattr(model_class, "contributions", counting)
    monkeypatch.setattr(model_class, "predict_proba", lambda self, X: pytest.fail("2nd call"))
    customers = [
        {"customer_id": r["customer_id"], "features": request_features(r)} for r in reversed_rows
    ]
    response = client.post("/score_batch", json={"customers": customers})
    assert response.status_code == 200, response.text
    scores = response.json()["scores"]
    assert [s["customer_id"] for s in scores] == [r["customer_id"] for r in reversed_rows]
    assert calls == [len(rows)]
    assert [s["churn_probability"] for s in scores] == pytest.approx(list(expected), abs=1e-12)


def test_score_events_equals_score_on_offline_features(client, materialized, rows):
    payload = histories(materialized.warehouse, rows[:2])
    for row, history in zip(rows[:2], payload, strict=True):
        events_score = client.post("/score_events", json=history)
        assert events_score.status_code == 200, events_score.text
        direct = client.post("/score", json=body(row)).json()
        assert events_score.json()["churn_probability"] == direct["churn_probability"]
        assert events_score.json()["reasons"] == direct["reasons"]


def test_score_events_accepts_payments_and_tickets_omitted(client, materialized, rows):
    history = histories(materialized.warehouse, rows[:1])[0]
    slim = {k: history[k] for k in ("customer", "events", "as_of")}
    response = client.post("/score_events", json=slim)
    assert response.status_code == 200, response.text
    assert 0.0 <= response.json()["churn_probability"] <= 1.0


def test_model_card(client):
    from serving.service import CARD, MODEL_TAG

    card = client.post("/model", json={}).json()
    assert card["model_tag"] == MODEL_TAG
    for field in (
        "trained_at",
        "data_window",
        "metrics",
        "thresholds",
        "feature_schema",
        "lineage",
    ):
        assert card[field] == json.loads(json.dumps(CARD[field]))


def test_openapi_document_describes_the_packaged_model(client):
    from serving.schemas import nullable_features
    from serving.service import CARD

    schemas = client.get("/docs.json").json()["components"]["schemas"]
    features = schemas["Features"]
    assert features["additionalProperties"] is False
    assert set(features["required"]) == set(CARD["feature_order"])
    nullable = nullable_features(CARD)
    for spec in CARD["feature_schema"]:
        prop = features["properties"][spec["name"]]
        if spec["name"] in nullable:  # a mean over an empty window: the value, or null
            prop, none = prop["anyOf"]
            assert none == {"type": "null"}
        if spec["kind"] == "categorical":
            assert sorted(prop["enum"]) == sorted(spec["categories"])
        else:
            assert prop["type"] == spec["dtype"]
            assert prop["minimum"] == spec["minimum"] and prop["maximum"] == spec["maximum"]


# /metrics needs the Prometheus setup of `bentoml serve`; test_service_http checks it with keys.
@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz"])
def test_health_routes_are_open_even_with_keys(secured, path):
    assert secured.get(path).status_code == 200


# --- refusals --------------------------------------------------------------------------------


def _with(row: dict, **changes) -> dict:
    features = request_features(row)
    for name, value in changes.items():
        if value is _DROP:
            features.pop(name)
        else:
            features[name] = value
    return {"customer_id": row["customer_id"], "features": features}


_DROP = object()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"events_30d": _DROP}, "events_30d"),
        ({"not_a_feature": 1}, "not_a_feature"),
        ({"age": "forty"}, "age"),
        ({"age": 40.5}, "age"),
        ({"age": True}, "age"),
        ({"age": None}, "age"),
        ({"age": 500}, "age"),
        ({"events_7d": -1}, "events_7d"),
        ({"plan": "platinum"}, "plan"),
        ({"plan": 3}, "plan"),
        ({"monthly_fee": "NaN"}, "monthly_fee"),
        ({"monthly_fee": 1e300}, "monthly_fee"),
    ],
)
def test_bad_features_are_400_naming_the_feature(client, rows, changes, field):
    response = client.post("/score", json=_with(rows[0], **changes))
    assert response.status_code == 400
    assert_names(response, "features", field)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_json_numbers_are_refused(client, rows, literal):
    text = json.dumps(_with(rows[0], monthly_fee=123456.0)).replace("123456.0", literal)
    assert_names(client.post("/score", content=text), "features", "monthly_fee")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"features": {}}, "customer_id"),
        ({"customer_id": "c1"}, "features"),
        ({"customer_id": "", "features": {}}, "customer_id"),
        ({"customer_id": "c1", "features": {}, "threshold": 1.5}, "threshold"),
        ({"customer_id": "c1", "features": {}, "threshold": "high"}, "threshold"),
        ({"customer_id": "c1", "features": {}, "extra": 1}, "extra"),
    ],
)
def test_bad_envelope_is_400_naming_the_field(client, payload, field):
    assert_names(client.post("/score", json=payload), field)


@pytest.mark.parametrize("raw", [b'{"customer_id": "c1",', b"not json", b"[1, 2]", b'"text"'])
def test_malformed_json_is_400(client, raw):
    response = client.post("/score", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["detail"]


def test_empty_batch_is_refused(client):
    assert_names(client.post("/score_batch", json={"customers": []}), "customers")


def test_oversized_batch_is_refused_naming_the_field(client, rows):
    from serving.schemas import MAX_BATCH_SIZE

    customers = [{"customer_id": "c", "features": request_features(rows[0])}] * (MAX_BATCH_SIZE + 1)
    response = client.post("/score_batch", json={"customers": customers})
    assert_names(response, "customers")
    assert str(MAX_BATCH_SIZE) in response.json()["detail"][0]["msg"]


def test_bad_row_in_batch_names_its_index(client, rows):
    customers = [body(r) for r in rows[:3]]
    customers[2]["features"]["age"] = -5
    assert_names(
        client.post("/score_batch", json={"customers": customers}),
        "customers",
        2,
        "features",
        "age",
    )


def test_body_over_the_byte_cap_is_413(client, monkeypatch):
    from serving import limits

    big = b"{" + b" " * (limits.DEFAULT_MAX_BODY_BYTES + 1) + b"}"
    response = client.post("/score", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["detail"][0]["loc"] == ["body"]


def test_score_events_refusals(client, materialized, rows):
    history = histories(materialized.warehouse, rows[:1])[0]
    wrong_customer = json.loads(json.dumps(history))
    wrong_customer["events"][0]["customer_id"] = "SOMEONE-ELSE"
    assert_names(client.post("/score_events", json=wrong_customer), "events", 0, "customer_id")

    too_early = history | {"as_of": "1990-01-01T00:00:00Z"}
    assert_names(client.post("/score_events", json=too_early), "customer", "signup_date")

    bad_event = json.loads(json.dumps(history))
    bad_event["events"][0]["event_type"] = "teleport"
    assert_names(client.post("/score_events", json=bad_event), "events", 0, "event_type")

    no_as_of = {k: v for k, v in history.items() if k != "as_of"}
    assert_names(client.post("/score_events", json=no_as_of), "as_of")

    bad_age = json.loads(json.dumps(history))
    bad_age["customer"]["age"] = 7
    assert_names(client.post("/score_events", json=bad_age), "customer", "age")


def test_model_route_refuses_a_body_with_fields(client):
    assert_names(client.post("/model", json={"verbose": True}), "verbose")


# --- auth ------------------------------------------------------------------------------------


def test_auth_refuses_missing_and_wrong_keys_without_scoring(secured, rows):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}):
        for path in ("/score", "/score_batch", "/score_events", "/model"):
            payload = body(rows[0], customer_id="unauthorized-customer")
            response = secured.post(path, json=payload, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.json()["detail"][0]["loc"] == ["header", "Authorization"]
            assert KEY not in response.text and "wrong" not in response.text
            assert response.headers["www-authenticate"].startswith("Bearer")


def test_auth_accepts_any_configured_key(secured, rows):
    for key in (KEY, "other-key"):
        response = secured.post(
            "/score", json=body(rows[0]), headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 200, response.text


def test_without_keys_the_service_is_open(client, rows):
    assert client.post("/score", json=body(rows[0])).status_code == 200


# --- prediction log (checked by the client fixture's finalizer) --------------------------------


def _score_on_every_route(client, materialized, rows) -> None:
    assert client.post("/score", json=body(rows[0], customer_id="logged-customer")).is_success
    batch = {"customers": [body(rows[1], customer_id="logged-batch")]}
    assert client.post("/score_batch", json=batch).status_code == 200
    history = histories(materialized.warehouse, rows[:1])[0]
    assert client.post("/score_events", json=history).status_code == 200


def _published_log_holds_the_answers(log_home, rows) -> None:
    """After the lifespan shutdown the log file is published, and each answered request is in it
    once, with its features and probability; refused ones are not."""
    files = list((log_home / "prediction_logs").glob(f"*/*{CLOSED_SUFFIX}"))
    assert files, list(log_home.rglob("*"))
    records = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    logged = [r for r in records if r["customer_id"] == "logged-customer"]
    assert len(logged) == 1
    assert not [r for r in records if r["customer_id"] == "unauthorized-customer"]
    record = logged[0]
    assert record["route"] == "/score" and record["risk_tier"] in {"low", "medium", "high"}
    assert record["features"] == request_features(rows[0])
    assert math.isclose(record["churn_probability"], offline_probabilities(rows[:1])[0])
    assert {r["route"] for r in records} >= {"/score", "/score_batch", "/score_events"}
    events = [r for r in records if r["route"] == "/score_events"]
    assert all(r["observation_date"] for r in events)
