"""Champion and challenger behind one service: ``shadow``, ``canary`` and ``off`` modes.

The Bento may package a challenger next to the champion (``churn_bento`` does when the store
holds one; see ``churn.registry.roles``). Which one answers is decided at serve time:

* ``CHURN_SERVING_MODE`` = ``shadow`` (the default when a challenger is packaged): the champion
  answers every request; the challenger scores the same rows *off the response path*, in a
  background thread that drains a bounded queue every 50 ms and scores everything pending in one
  vectorized call, then writes the log records with both probabilities. If the queue is full (the
  service is saturated) the rows are logged without the challenger's score and counted as shed,
  so the shadow can never hold up an answer by more than a queue put (it still shares the CPU).
* ``canary``: ``CHURN_CANARY_FRACTION`` (default 0.1) of customers get the challenger's answer.
  The split is by a keyed BLAKE2b hash of ``customer_id``, so a customer always lands on the
  same side, on every route, across restarts and replicas. The *other* model still scores the
  row off the path, so every logged row carries both probabilities (paired evaluation).
* ``off`` (the default without a challenger): the champion only, exactly as before.

With a challenger served (shadow or canary) each score object carries ``model_role``
(``champion`` / ``challenger``: who answered; ``model_version`` is that model's version); in
``off`` the score object is unchanged. Log records gain ``model_role``, ``champion_version``,
``champion_probability``, ``challenger_version`` and ``challenger_probability``.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import numpy as np

from churn.modeling.spec import encode_records
from churn.monitoring.prediction_log import PredictionLogWriter
from churn.scoring.scorer import Scorer
from serving.config import (
    CANARY,
    OFF,
    ServingConfigError,
    ServingMode,
)
from serving.prediction_logging import prediction_records

logger = logging.getLogger("churn.serving")

SHADOW_QUEUE_REQUESTS = 4096
"""Requests waiting for their off-path score; beyond this the shadow is shed, never the answer."""
SHADOW_MAX_ROWS_PER_CALL = 4096
SHADOW_COALESCE_SECONDS = 0.05
"""After the first queued request the shadow thread waits this long and then scores everything
pending in one call: one GIL-holding wake-up per 50 ms instead of one per request (measured:
per-request wake-ups doubled p50 at concurrency 1). Logs are flushed every second anyway."""
_CANARY_KEY = b"churn-canary-v1"
"""Changing it reshuffles every customer between the two models: don't, during an experiment."""
CHAMPION, CHALLENGER = "champion", "challenger"


def canary_bucket(customer_id: str) -> float:
    """A stable position in [0, 1) for a customer; below the fraction -> challenger."""
    digest = hashlib.blake2b(customer_id.encode(), digest_size=8, key=_CANARY_KEY).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def routed_to_challenger(customer_ids: Sequence[str], fraction: float) -> np.ndarray:
    return np.fromiter(
        (canary_bucket(c) < fraction for c in customer_ids), dtype=bool, count=len(customer_ids)
    )


def resolve_challenger_tag(pinned: str | None, configured: str | None) -> str | None:
    """The challenger to package/serve: the Bento's ``challenger_tag`` build argument when set
    (``none`` = explicitly none: a built Bento is what it was built as), else ``configured``
    (``CHURN_CHALLENGER_TAG`` from the service's settings: a tag, ``auto`` for the store's
    current challenger, or unset/none for no challenger). Returns an exact tag, or None."""
    from churn import registry
    from churn.registry import roles

    value = pinned if pinned is not None else configured
    value = (value or "").strip()
    if value.lower() in ("", "none", "off"):
        return None
    if value.lower() == "auto":
        return roles.challenger_tag()
    return registry.locate(value)[0]


def check_compatible(champion_card: Mapping[str, Any], challenger_card: Mapping[str, Any]) -> None:
    """Requests are validated against the champion's schema, so the challenger may only need
    features the champion has (a subset, in any order)."""
    missing = [
        f for f in challenger_card["feature_order"] if f not in champion_card["feature_order"]
    ]
    if missing:
        raise ServingConfigError(
            f"the challenger needs features the champion's requests do not carry: {missing[:10]}"
        )


def load_scorer(loaded: Any) -> tuple[Any, Scorer]:
    """A loaded model (``churn.registry.RegisteredModel``) and its :class:`Scorer`, with
    LightGBM on one thread (see service)."""
    if hasattr(loaded.model, "num_threads"):
        loaded.model.num_threads = 1
    return loaded, Scorer(loaded.model, loaded.card, loaded.version)


def model_summary(role: str, tag: str, card: Mapping[str, Any]) -> dict[str, Any]:
    """One entry of the ``/model`` card's ``models`` list."""
    return {
        "role": role,
        "model_tag": tag,
        "model_version": tag.split(":", 1)[1],
        "model_kind": card.get("model_kind"),
        "trained_at": card.get("trained_at"),
        "metrics": card.get("metrics"),
        "thresholds": card.get("thresholds"),
        "risk_tiers": card.get("risk_tiers"),
        "data_window": card.get("data_window"),
        "feature_order": card.get("feature_order"),
        "lineage": card.get("lineage"),
    }


class ShadowScorer:
    """Scores logged rows with the model that did *not* answer, in a background thread."""

    def __init__(self, models: Mapping[str, Scorer], writer: PredictionLogWriter) -> None:
        self.models = models
        self.writer = writer
        self.shed_rows = 0
        self.scored_rows = 0
        self._queue: queue.Queue[tuple[str, list[dict], Sequence[Mapping[str, Any]]] | None] = (
            queue.Queue(SHADOW_QUEUE_REQUESTS)
        )
        self._thread = threading.Thread(target=self._run, name="shadow-scorer", daemon=True)
        self._thread.start()

    def submit(self, role: str, records: list[dict], features: Sequence[Mapping[str, Any]]) -> None:
        """Queue ``records`` for ``role``'s probability; shed (log as-is) when the queue is full."""
        try:
            self._queue.put_nowait((role, records, features))
        except queue.Full:
            self.shed_rows += len(records)
            self.writer.write(records)

    def close(self, timeout: float = 10.0) -> None:
        """Score what is queued, write it, stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            time.sleep(SHADOW_COALESCE_SECONDS)
            pending = [item]
            rows = len(item[1])
            stop = False
            while rows < SHADOW_MAX_ROWS_PER_CALL:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                pending.append(more)
                rows += len(more[1])
            try:
                self._score(pending)
            except Exception:  # a shadow failure must never take the answers down
                logger.exception("shadow scoring failed; logging %d rows without it", rows)
                for _, records, _ in pending:
                    self.writer.write(records)
            if stop:
                return

    def _score(self, pending: list[tuple[str, list[dict], Sequence[Mapping[str, Any]]]]) -> None:
        for role, scorer in self.models.items():
            batch = [(records, features) for r, records, features in pending if r == role]
            if not batch:
                continue
            features = [row for _, rows in batch for row in rows]
            probabilities = scorer.model.predict_proba(encode_records(features, scorer.specs))
            field = f"{role}_probability"
            i = 0
            for records, _ in batch:
                for record in records:
                    record[field] = float(probabilities[i])
                    i += 1
            self.scored_rows += i
        self.writer.write([record for _, records, _ in pending for record in records])


class Router:
    """Scores a request with the model(s) the mode asks for and logs every row once."""

    def __init__(
        self,
        champion: Scorer,
        challenger: Scorer | None,
        mode: ServingMode,
        writer: PredictionLogWriter,
    ) -> None:
        self.champion = champion
        self.challenger = challenger
        self.mode = mode
        self.writer = writer
        self.shadow: ShadowScorer | None = None
        if challenger is not None and mode.mode != OFF:
            self.shadow = ShadowScorer({CHAMPION: champion, CHALLENGER: challenger}, writer)

    def score(
        self,
        request_id: str,
        route: str,
        customer_ids: list[str],
        features: list[dict[str, Any]],
        threshold: float | None,
        observation_date: date | None = None,
    ) -> list[dict[str, Any]]:
        """Score dicts in input order."""
        if self.shadow is None:
            scored = self.champion.score(customer_ids, features, threshold)
            self.writer.write(
                prediction_records(
                    request_id,
                    route,
                    self.champion.model_version,
                    customer_ids,
                    features,
                    scored,
                    scored.scores[0]["threshold"],
                    observation_date,
                )
            )
            return scored.scores
        if self.mode.mode == CANARY:
            to_challenger = routed_to_challenger(customer_ids, self.mode.canary_fraction)
            if to_challenger.any() and not to_challenger.all():
                out: list[dict[str, Any]] = [{}] * len(customer_ids)
                for role, mask in ((CHAMPION, ~to_challenger), (CHALLENGER, to_challenger)):
                    index = np.flatnonzero(mask).tolist()
                    scores = self._answer(
                        role,
                        request_id,
                        route,
                        [customer_ids[i] for i in index],
                        [features[i] for i in index],
                        threshold,
                        observation_date,
                    )
                    for i, score in zip(index, scores, strict=True):
                        out[i] = score
                return out
            role = CHALLENGER if to_challenger.all() else CHAMPION
        else:
            role = CHAMPION
        return self._answer(
            role, request_id, route, customer_ids, features, threshold, observation_date
        )

    def _answer(
        self,
        role: str,
        request_id: str,
        route: str,
        customer_ids: list[str],
        features: list[dict[str, Any]],
        threshold: float | None,
        observation_date: date | None,
    ) -> list[dict[str, Any]]:
        assert self.challenger is not None and self.shadow is not None
        scorer = self.champion if role == CHAMPION else self.challenger
        other = CHALLENGER if role == CHAMPION else CHAMPION
        scored = scorer.score(customer_ids, features, threshold)
        records = prediction_records(
            request_id,
            route,
            scorer.model_version,
            customer_ids,
            features,
            scored,
            scored.scores[0]["threshold"],
            observation_date,
        )
        champion_version = self.champion.model_version
        challenger_version = self.challenger.model_version
        for record in records:
            record["model_role"] = role
            record["champion_version"] = champion_version
            record["challenger_version"] = challenger_version
            record[f"{role}_probability"] = record["churn_probability"]
            record[f"{other}_probability"] = None
        for score in scored.scores:
            score["model_role"] = role
        self.shadow.submit(other, records, features)  # type: ignore[arg-type]
        return scored.scores

    def describe(self) -> dict[str, Any]:
        out = self.mode.describe()
        if self.shadow is not None:
            out["shadow_scored_rows"] = self.shadow.scored_rows
            out["shadow_shed_rows"] = self.shadow.shed_rows
        return out

    def close(self) -> None:
        if self.shadow is not None:
            started = time.monotonic()
            self.shadow.close()
            logger.info(
                "shadow scorer drained in %.2f s (%d rows scored, %d shed)",
                time.monotonic() - started,
                self.shadow.scored_rows,
                self.shadow.shed_rows,
            )
