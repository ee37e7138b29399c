"""The long fuzz run (``make reliability``): schemathesis over every route of the served
Bento's /docs.json, at least 1,000 requests, positive and negative generation. The short run
is in test_reliability_service.py. After shutdown, the prediction logs must hold exactly the
rows answered with a 200: nothing refused reached the model."""

from __future__ import annotations

import collections

import pytest

from tests.reliability_support import fuzz, logged_records
from tests.serving_support import bento_tag, start, wait_ready

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

EXAMPLES = 130
"""Per operation and mode: 4 POST routes x 2 modes x 130 = 1,040, plus the GET routes."""


@pytest.mark.timeout(1800)
def test_fuzz_every_route_1000_requests(materialized, tmp_path, capsys):
    server = start(bento_tag(materialized), tmp_path / "fuzz", None)
    try:
        wait_ready(server)
        report = fuzz(server.url, EXAMPLES)
    finally:
        server.stop()
    by_status = collections.Counter(status for *_, status in report.statuses.elements())
    by_route = collections.Counter(label for label, *_ in report.statuses.elements())
    records = logged_records(server.home)
    with capsys.disabled():
        print(  # noqa: T201
            f"\nfuzz: {report.requests} requests in {report.seconds:.0f} s; statuses "
            f"{dict(sorted(by_status.items()))}; routes {dict(sorted(by_route.items()))}; "
            f"{len(report.failures)} check failures; {len(records)} log rows for "
            f"{sum(report.scored.values())} scored rows"
        )
    assert not report.failures, "\n\n".join(report.failures[:10])
    assert report.requests >= 1000
    assert not [key for key in report.statuses if key[2] >= 500]
    assert collections.Counter(r["customer_id"] for r in records) == report.scored
