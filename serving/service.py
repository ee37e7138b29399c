"""``serving.service:ChurnService``: the champion behind the scoring routes and /model.

The model is a ``BentoModel`` class attribute, so ``bentoml build`` packages it with the code. Its
card is read at import time because the request schemas (feature names, types, categories,
bounds) are generated from it: validation and ``/docs.json`` then describe the packaged model,
not a hand-written copy. Which model: the Bento's ``model_tag`` build argument, else
``CHURN_MODEL_TAG``, else ``churn_model:latest``, resolved to its exact version so the card and
the packaged model cannot disagree.

A challenger may be packaged beside the champion (``challenger_tag`` build argument, else
``CHURN_CHALLENGER_TAG``); ``CHURN_SERVING_MODE`` (shadow / canary / off) decides who answers
(``serving.challenger``). Per-caller rate limits: ``serving.ratelimit``.

Errors: schema violations are BentoML's 400 with a ``detail`` list whose ``loc`` names the field
(kept rather than remapped to 422 so every refusal, ours included, has one status and shape,
``serving.errors``, with echoed text bounded); a missing API key is 401 (``serving.auth``); a
non-JSON body 415, an oversized body 413, too many bytes in flight 503 (``serving.limits``); an
oversized request head 431 and a slow one 408 (``serving.http_limits``), a slow body 408
(``serving.limits``), an unknown route 404 and a wrong method 405 in the same shape
(``serving.errors``); a full prediction-log backlog 503
(``serving.prediction_logging``). A model that cannot be found raises ``ModelNotFoundError``,
an empty or truncated one ``ModelLoadError`` (``serving.startup``), and a bad ``CHURN_*`` setting
``SettingError`` (``serving.config``), all at import, which stops startup.

What importing this module does: read the settings and the card, check the model files, build
the request schemas (BentoML needs them when the class is defined). What changes the process
(the environment for the workers, log filters, the log writer, GC tuning) runs when the
service starts: :meth:`ChurnService.prepare_workers` (once, before workers are spawned) and
``ChurnService.__init__`` (in each worker). The one exception is the request-head cap, see
:data:`_UVICORN_WORKER`.
"""

from __future__ import annotations

import gc
import logging
import sys
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import bentoml
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json
from starlette.responses import Response

from churn import registry
from churn.modeling.spec import specs_from_dicts
from churn.scoring.scorer import Scorer
from serving import http_limits, metrics_files, metrics_labels
from serving.auth import ApiKeyMiddleware
from serving.challenger import (
    Router,
    check_compatible,
    load_scorer,
    model_summary,
    resolve_challenger_tag,
)
from serving.config import (
    apply_single_thread_default,
    apply_trusted_proxies,
    load_serving_settings,
)
from serving.errors import (
    BoundedErrorsMiddleware,
    install_client_error_log_filter,
    invalid_request,
)
from serving.events import NoEventFeatures, OnlineFeatures, observation_date_of, plan_for_card
from serving.limits import BodyLimitMiddleware
from serving.prediction_logging import LogBacklogMiddleware, open_writer
from serving.ratelimit import RateLimitMiddleware
from serving.schemas import MAX_BATCH_SIZE, ModelRequest, Score, ScoreBatchResponse, build_schemas
from serving.startup import check_model_file, checked_card, checked_model

logger = logging.getLogger("churn.serving")

PREDICTION_LOG_FLUSH_SECONDS = 0.05
"""The log writer's thread serializes what piled up since its last flush while holding the GIL:
at 1 s that was ~30 ms of JSON at 2,000 req/s, and requests arriving meanwhile waited a GIL
switch interval (5 ms) or more, which set the p99. Every 50 ms it is ~1.5 ms at a time."""
GIL_SWITCH_SECONDS = 0.001
"""How long the log thread may hold the GIL before a waiting request gets it (Python's 5 ms)."""


class ServiceArguments(BaseModel):
    """``bentoml build --arg model_tag=...`` (set by the churn_bento asset) pins the model in the
    Bento's own metadata. BentoML 1.4 references models instead of copying them into the Bento
    directory, so without the pin a Bento would pick up whatever ``latest`` is when it starts."""

    model_tag: str | None = None
    challenger_tag: str | None = None
    """The challenger packaged next to the champion, or ``none`` (``serving.challenger``)."""


# Every CHURN_* setting, parsed once and checked here so a bad one stops `bentoml serve` with
# its name; everything below and the middleware take their settings from this object.
SETTINGS = load_serving_settings()


def model_tag() -> str:
    """Build argument, else ``CHURN_MODEL_TAG``, else the newest ``churn_model``."""
    pinned = bentoml.use_arguments(ServiceArguments).model_tag
    return pinned or SETTINGS.model_tag or f"{registry.MODEL_NAME}:latest"


MODEL_TAG, MODEL_DIR = registry.locate(model_tag())
CARD: dict[str, Any] = checked_card(MODEL_TAG, MODEL_DIR)
SCHEMAS = build_schemas(CARD, specs_from_dicts(CARD["feature_schema"]))
ScoreRequest = SCHEMAS.score_request
ScoreBatchRequest = SCHEMAS.batch_request
ScoreEventsRequest = SCHEMAS.events_request
try:
    FEATURE_PLAN = plan_for_card(CARD)  # how /score_events computes this model's features
    NO_EVENT_FEATURES = ""
except NoEventFeatures as reason:  # a flat model: /score_events refuses, /score works
    FEATURE_PLAN, NO_EVENT_FEATURES = None, str(reason)
CHALLENGER_TAG = resolve_challenger_tag(
    bentoml.use_arguments(ServiceArguments).challenger_tag, SETTINGS.challenger_tag
)
CHALLENGER_DIR = registry.locate(CHALLENGER_TAG)[1] if CHALLENGER_TAG else None
CHALLENGER_CARD = checked_card(CHALLENGER_TAG, CHALLENGER_DIR) if CHALLENGER_DIR else None
if CHALLENGER_CARD is not None:
    check_compatible(CARD, CHALLENGER_CARD)
SERVING_MODE = SETTINGS.serving_mode(has_challenger=CHALLENGER_TAG is not None)
# An empty or truncated model.pkl stops startup here naming itself, instead of a worker that
# dies in __init__ and is restarted forever (serving.startup).
check_model_file(MODEL_TAG, MODEL_DIR)
if CHALLENGER_TAG is not None and CHALLENGER_DIR is not None:
    check_model_file(CHALLENGER_TAG, CHALLENGER_DIR)
_UVICORN_WORKER = bentoml.server_context.worker_index is not None
"""True in a ``bentoml serve`` worker, which builds and loads uvicorn's ``Config`` right after
importing this module. The head cap (``serving.http_limits``) must be in uvicorn's protocol table
by then, so it is installed here, in workers only; nothing public does the job: BentoML runs
startup hooks and ``__init__`` in the ASGI lifespan, after uvicorn has resolved its protocol
class, and exposes no uvicorn parser setting."""
if _UVICORN_WORKER:
    http_limits.install(SETTINGS.head_timeout_seconds)
    metrics_files.install()  # before any metric is recorded: no SIGBUS on a full disk
# BentoML builds its metrics middleware when it builds the app, after this import: from then on
# it labels requests by route, not by whatever path a client sends (serving.metrics_labels).
metrics_labels.install()


@bentoml.service(
    name="churn_service",
    workers=1,
    traffic={"timeout": 30},
    # Per-request framework work on the hot route (docs/performance.md): OpenTelemetry spans on
    # /score were ~45% of its CPU with no exporter configured (the default), the access log line
    # ~10%; every scored row is in the prediction log anyway. HTTP metrics stay on (/metrics).
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": ["/score$"]},
    labels={
        "model": MODEL_TAG,
        "challenger": CHALLENGER_TAG or "none",
        "max_batch_size": str(MAX_BATCH_SIZE),
    },
)
class ChurnService:
    """Churn scores for one customer, a batch, or a raw history; answers carry their reasons."""

    champion = bentoml.models.BentoModel(MODEL_TAG)
    if CHALLENGER_TAG is not None:
        challenger = bentoml.models.BentoModel(CHALLENGER_TAG)

    @bentoml.on_deployment
    def prepare_workers() -> None:
        """Run once by ``bentoml serve`` before it spawns the workers, which inherit the
        environment: whose ``X-Forwarded-For`` uvicorn believes (``CHURN_TRUSTED_PROXIES``) and
        one OpenMP thread per worker (``serving.config``)."""
        apply_trusted_proxies(SETTINGS.trusted_proxies)
        apply_single_thread_default()

    def __init__(self) -> None:
        install_client_error_log_filter()  # bounded 400 log lines (serving.errors)
        stored = self.champion
        loaded = checked_model(str(stored.tag), Path(stored.path))
        if hasattr(loaded.model, "num_threads"):
            loaded.model.num_threads = 1  # LightGBM: see apply_single_thread_default
        self.tag = loaded.tag
        self.card = {"model_tag": loaded.tag, "model_version": loaded.version, **loaded.card}
        self.scorer = Scorer(loaded.model, loaded.card, loaded.version)
        self.online_features = OnlineFeatures(FEATURE_PLAN) if FEATURE_PLAN else None
        self.prediction_log = open_writer(
            SETTINGS.prediction_logs_dir, PREDICTION_LOG_FLUSH_SECONDS
        )
        challenger_scorer = None
        models = [model_summary("champion", loaded.tag, loaded.card)]
        if CHALLENGER_TAG is not None:
            stored_challenger = self.challenger
            challenger, challenger_scorer = load_scorer(
                checked_model(str(stored_challenger.tag), Path(stored_challenger.path))
            )
            models.append(model_summary("challenger", challenger.tag, challenger.card))
        self.router = Router(self.scorer, challenger_scorer, SERVING_MODE, self.prediction_log)
        self.card["models"] = models
        # Everything loaded so far lives as long as the worker: freezing it keeps the cyclic
        # collector from rescanning it, which showed up as ~200 ms stalls in the p99.
        gc.collect()
        gc.freeze()
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        logger.info("churn_service ready with %s (%s)", loaded.tag, loaded.model.kind)

    def __is_ready__(self) -> bool:
        """BentoML's readiness hook (``/readyz`` answers 503 when False): ready while the
        prediction log is being written, so a balancer stops sending requests whose answers
        could not be logged."""
        return self.prediction_log.healthy

    @bentoml.api(route="/score")
    async def score(self, request: ScoreRequest, /) -> Score:  # type: ignore[valid-type]
        """Score one customer from their feature values."""
        return self._score("/score", [request.customer_id], [request.features], request.threshold)[
            0
        ]

    @bentoml.api(route="/score_batch", output_spec=ScoreBatchResponse)
    def score_batch(self, request: ScoreBatchRequest, /) -> Response:  # type: ignore[valid-type]
        """Score up to ``MAX_BATCH_SIZE`` customers in one model call; answers keep input order.

        The answer is serialized here, in one pydantic-core pass over the score dicts, instead
        of as 1,000 ``Score`` models for BentoML to dump: the scores are built from arrays by
        :class:`~churn.scoring.scorer.Scorer`, so validating them again only cost time (4.7 ms of a
        1,000-row request). ``output_spec`` keeps ``ScoreBatchResponse`` in the OpenAPI document.
        """
        rows = request.customers
        scores = self._scores(
            "/score_batch",
            [row["customer_id"] for row in rows],
            [row["features"] for row in rows],
            request.threshold,
        )
        return Response(to_json({"scores": scores}), media_type="application/json")

    @bentoml.api(route="/score_events")
    def score_events(self, request: ScoreEventsRequest, /) -> Score:  # type: ignore[valid-type]
        """Compute the features from a raw history with the training SQL, then score them.

        The body follows the model (``serving.schemas.events_request``): the five raw tables,
        or an event log's own columns; a flat model has no history to compute from (400).
        """
        if self.online_features is None:
            invalid_request("ScoreEventsRequest", [(("body",), NO_EVENT_FEATURES)])
        observation_date = observation_date_of(request.as_of)
        customer_id = _field(request.customer, "customer_id")
        _check_history(request, customer_id, observation_date)
        features = self.online_features.compute(
            request.customer,
            request.events,
            getattr(request, "payments", ()),
            getattr(request, "tickets", ()),
            observation_date,
        )
        try:
            SCHEMAS.features_adapter.validate_python(features)
        except ValidationError as error:
            invalid_request(
                "ScoreEventsRequest",
                [(("computed_features", *e["loc"]), e["msg"]) for e in error.errors()],
            )
        return self._score(
            "/score_events",
            [customer_id],
            [features],
            request.threshold,
            observation_date,
        )[0]

    @bentoml.api(route="/model")
    def model(self, request: ModelRequest, /) -> dict[str, Any]:
        """The packaged model's card: version, training window, metrics, thresholds, schema."""
        return self.card | self.router.describe()

    @bentoml.on_shutdown
    def close(self) -> None:
        """Publish the open prediction log file so the monitoring pipeline can ingest it."""
        self.router.close()  # scores and logs what the shadow still holds
        self.prediction_log.close()
        if self.online_features is not None:
            self.online_features.close()

    def _scores(
        self,
        route: str,
        customer_ids: list[str],
        features: list[dict[str, Any]],
        threshold: float | None,
        observation_date: date | None = None,
    ) -> list[dict[str, Any]]:
        """Score dicts in input order, logged under a fresh request id."""
        return self.router.score(
            uuid.uuid4().hex, route, customer_ids, features, threshold, observation_date
        )

    def _score(
        self,
        route: str,
        customer_ids: list[str],
        features: list[dict[str, Any]],
        threshold: float | None,
        observation_date: date | None = None,
    ) -> list[Score]:
        scores = self._scores(route, customer_ids, features, threshold, observation_date)
        return [Score.model_validate(score) for score in scores]


def _field(row: Any, name: str) -> Any:
    """A value of a request row: a validated model (five tables) or a TypedDict (event log),
    where an optional key may be absent."""
    return row.get(name) if isinstance(row, dict) else getattr(row, name)


def _check_history(request: Any, customer_id: str, observation_date: date) -> None:
    """Refuse rows of another customer and a profile that did not exist yet at ``as_of``."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for table in ("events", "payments", "tickets"):
        for i, row in enumerate(getattr(request, table, ())):
            row_customer = _field(row, "customer_id")
            if row_customer is not None and row_customer != customer_id:
                problems.append(
                    ((table, i, "customer_id"), f"is not the profile's customer ({customer_id})")
                )
    signup = _field(request.customer, "signup_date")
    if signup is not None and signup > observation_date:
        problems.append(
            (
                ("customer", "signup_date"),
                f"{signup} is after the observation date {observation_date} (as_of's UTC day)",
            )
        )
    if problems:
        invalid_request("ScoreEventsRequest", problems)


# Starlette runs the first-added middleware outermost. Rate limits come first so a client
# without a valid key is limited by address before its 401 (serving.ratelimit); keys are
# checked before a body is read.
ChurnService.add_asgi_middleware(
    RateLimitMiddleware, limits=SETTINGS.rate_limits, keys=SETTINGS.api_keys
)
ChurnService.add_asgi_middleware(ApiKeyMiddleware, keys=SETTINGS.api_keys)
ChurnService.add_asgi_middleware(LogBacklogMiddleware)  # before reading a body it cannot log
ChurnService.add_asgi_middleware(  # 415 / 413 / 503 / 408 while the body is read
    BodyLimitMiddleware,
    max_bytes=SETTINGS.max_body_bytes,
    max_inflight=SETTINGS.max_inflight_bytes,
    body_timeout=SETTINGS.body_timeout_seconds,
    min_rate=SETTINGS.min_body_rate,
)
ChurnService.add_asgi_middleware(BoundedErrorsMiddleware)  # innermost: bounds BentoML's 4xx
