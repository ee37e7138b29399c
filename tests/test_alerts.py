"""Alerts reach a real webhook (a local HTTP server) as Slack-compatible JSON, and a webhook
that is down, failing or absent never fails the caller."""

from __future__ import annotations

import socket
import time

import pytest

from churn.monitoring import alerts
from churn.settings import load_settings
from churn_assets.alerting import alert_unless
from tests.alert_server import AlertServer


def test_an_alert_is_posted_as_slack_json() -> None:
    with AlertServer() as server:
        assert alerts.post("drift_check failed on the 2025-07-01 snapshot", webhook=server.url)
    assert server.received == [{"text": "drift_check failed on the 2025-07-01 snapshot"}]
    assert server.content_types == ["application/json"]


def test_the_webhook_comes_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    with AlertServer() as server:
        monkeypatch.setenv("CHURN_ALERT_WEBHOOK", server.url)
        assert load_settings().alert_webhook == server.url
        assert not alert_unless(True, None, "all good")  # a passed check posts nothing
        assert alert_unless(False, None, "the quality gate refused lightgbm: AUC 0.61 < 0.65")
    assert server.received == [
        {"text": "churn: the quality gate refused lightgbm: AUC 0.61 < 0.65"}
    ]


def test_without_a_webhook_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHURN_ALERT_WEBHOOK", raising=False)
    assert not alerts.post("nobody listens")


def test_a_bad_webhook_setting_names_the_variable() -> None:
    with pytest.raises(ValueError, match="CHURN_ALERT_WEBHOOK must be an http"):
        load_settings({"CHURN_ALERT_WEBHOOK": "hooks.example/churn"})


def test_a_failing_webhook_is_a_warning_not_an_error() -> None:
    warnings: list[str] = []
    with AlertServer(status=500) as server:
        assert not alerts.post("x", webhook=server.url, warn=warnings.append)
    assert len(server.received) == 1
    assert len(warnings) == 1 and "HTTPError" in warnings[0] and "the alert was: x" in warnings[0]


def test_a_webhook_that_is_down_costs_at_most_the_timeout() -> None:
    with socket.socket() as probe:  # a free port with nobody listening once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    warnings: list[str] = []
    started = time.perf_counter()
    assert not alerts.post("x", webhook=f"http://127.0.0.1:{port}/", warn=warnings.append)
    assert time.perf_counter() - started < alerts.TIMEOUT_SECONDS + 1
    assert len(warnings) == 1 and "not delivered" in warnings[0]


def test_a_long_message_is_cut() -> None:
    assert len(alerts.message("x" * 10_000)["text"]) == alerts.MAX_TEXT_CHARS
