"""Send requests to ``serving.service:ChurnService`` in-process (``to_asgi``), in a fresh process.

    python -m tests.asgi_probe REQUESTS.json ANSWERS.json

The service reads its model's card when ``serving.service`` is imported, and BentoML's metrics
registry is process-global, so a test session that already serves one model cannot serve
another from the same process. A test about another home's model (an example source's) runs
this module with that home's ``BENTOML_HOME`` and ``CHURN_HOME``: the real service class, the
real request models from that card, the real prediction log (published when the app stops).

``REQUESTS.json`` is a list of ``{"path": "/score_events", "body": {...}}``; ``ANSWERS.json``
gets ``[{"status": 200, "json": {...}}, ...]`` in the same order.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(requests_path: str, answers_path: str) -> int:
    from starlette.testclient import TestClient

    from serving.service import ChurnService

    requests = json.loads(Path(requests_path).read_text())
    answers = []
    with TestClient(ChurnService.to_asgi()) as client:
        for request in requests:
            response = client.post(request["path"], json=request["body"])
            try:
                payload = response.json()
            except ValueError:
                payload = response.text
            answers.append({"status": response.status_code, "json": payload})
    Path(answers_path).write_text(json.dumps(answers))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
