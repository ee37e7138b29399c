"""Shared by the reliability tests: a served Bento's process tree, its prediction logs, and a
schemathesis fuzz loop that records what every response did."""

from __future__ import annotations

import collections
import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from churn.monitoring.prediction_log import CLOSED_SUFFIX, OPEN_SUFFIX


def process_tree(root: int) -> list[int]:
    """``root`` and every descendant, from /proc (Linux)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children[int(fields[1])].append(int(entry.name))
    tree, stack = [], [root]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(children.get(pid, []))
    return tree


def tree_rss_bytes(root: int) -> int:
    """Resident set size of ``root``'s whole process tree (VmRSS summed)."""
    total = 0
    for pid in process_tree(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def logged_records(home: Path, *, include_open: bool = False) -> list[dict[str, Any]]:
    """Every prediction-log record under ``home`` (published files; open ones on request)."""
    folder = home / "prediction_logs"
    patterns = [f"*/*{CLOSED_SUFFIX}"] + ([f"*/*{OPEN_SUFFIX}"] if include_open else [])
    records = []
    for pattern in patterns:
        for path in sorted(folder.glob(pattern)):
            records += [json.loads(line) for line in path.read_text().splitlines() if line]
    return records


def scored_ids(payload: Any) -> list[str]:
    """Customer ids of the score objects in a 200 answer (one, or a batch's)."""
    if isinstance(payload, dict) and "scores" in payload:
        return [score["customer_id"] for score in payload["scores"]]
    if isinstance(payload, dict) and "churn_probability" in payload:
        return [payload["customer_id"]]
    return []


BODY_ERRORS = frozenset({"json_invalid", "model_type", "missing"})
"""Errors about the body itself (not JSON, not an object, absent): their ``loc`` is ``[]``."""


def refusal_problems(status: int, body: str) -> str | None:
    """None when a 4xx body has the documented shape: ``detail`` items that each carry a
    ``loc`` naming the field (``[]``, the body itself, only for :data:`BODY_ERRORS`)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return f"{status}: body is not JSON: {body[:200]!r}"
    detail = payload.get("detail") if isinstance(payload, dict) else None
    if not isinstance(detail, list) or not detail:
        return f"{status}: no detail list: {body[:200]}"
    for item in detail:
        loc = item.get("loc") if isinstance(item, dict) else None
        if not isinstance(loc, list):
            return f"{status}: detail item without loc: {item}"
        if not loc and item.get("type") not in BODY_ERRORS:
            return f"{status}: empty loc for a {item.get('type')} error: {item}"
    return None


@dataclass
class FuzzReport:
    statuses: collections.Counter = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)
    scored: collections.Counter = field(default_factory=collections.Counter)
    """customer_id -> times it came back in a 200 score (each must be logged that often)."""
    seconds: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())


def fuzz(base_url: str, examples: int, report: FuzzReport | None = None) -> FuzzReport:
    """Every operation of ``/docs.json``, positive and negative generation, ``examples`` each.

    Checks: schemathesis' not_a_server_error, status_code_conformance, content_type_conformance
    and negative_data_rejection on every response; response_schema_conformance on 2xx (BentoML
    documents its 400 ``detail`` as a string while sending pydantic's list, so 4xx bodies get
    our own check instead: every ``detail[]`` names its field in ``loc``);
    positive_data_acceptance on /score and /score_batch with a body (/score_events has
    cross-field rules and bounds on the computed features that no JSON schema can express).
    """
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.core import NotSet
    from schemathesis.specs.openapi import checks as openapi_checks

    report = report or FuzzReport()
    always = [
        not_a_server_error,
        openapi_checks.status_code_conformance,
        openapi_checks.content_type_conformance,
        openapi_checks.negative_data_rejection,
    ]
    started = time.monotonic()
    schema = schemathesis.openapi.from_url(f"{base_url}/docs.json")

    def exercise(operation, mode):
        @given(operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def one(case) -> None:
            response = case.call(base_url=base_url, timeout=30)
            status = response.status_code
            report.statuses[(operation.label, mode.value, status)] += 1
            checks = list(always)
            if operation.method.upper() == "GET":
                # BentoML's own probes: /metrics is documented even when metrics are disabled
                # (then 404, plain text). They only have to stay up.
                checks = [not_a_server_error]
            elif status < 300:
                checks.append(openapi_checks.response_schema_conformance)
                if operation.path.startswith("/score"):
                    report.scored.update(scored_ids(response.json()))
            elif status < 500 and operation.method.upper() == "POST":
                problem = refusal_problems(status, response.text)
                if problem:
                    report.failures.append(f"{operation.label}: {problem}")
            if operation.path in ("/score", "/score_batch") and not isinstance(case.body, NotSet):
                checks.append(openapi_checks.positive_data_acceptance)
            for check in checks:
                try:
                    case.validate_response(response, checks=[check])
                except BaseException as error:  # schemathesis raises failure groups
                    report.failures.append(
                        f"{operation.label} [{mode.value}] {check.__name__}: "
                        f"{str(error)[:600]}\nbody: {case.body!r:.300}"
                    )

        return one

    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            # Negative data for a GET without parameters does not exist: Unsatisfiable.
            with contextlib.suppress(Unsatisfiable):
                exercise(operation, mode)()
    report.seconds += time.monotonic() - started
    return report
