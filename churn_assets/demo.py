"""``make demo``: after ``make pipeline``, serve the Dagster UI (:3000) and the Bento (:3001).

Both run until Ctrl-C. A sample request is written from the champion's own reference sample (not
from the warehouse, which the servers must never hold open), so the printed ``curl`` works
against whatever model was just trained.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from churn.settings import load_settings

DAGSTER_PORT = int(os.environ.get("CHURN_DAGSTER_PORT", "3000"))
BENTO_PORT = int(os.environ.get("CHURN_BENTO_PORT", "3001"))


def sample_request(path: Path) -> Path:
    """A /score body for a real training customer of the champion."""
    import pandas as pd

    from churn import registry

    champion = registry.load_model()
    row = pd.read_parquet(champion.reference_path).iloc[0].to_dict()
    features = {
        name: (value.item() if hasattr(value, "item") else value) for name, value in row.items()
    }
    path.write_text(json.dumps({"customer_id": "C-demo", "features": features}, indent=2))
    return path


def _wait_for(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return True
        except OSError:
            time.sleep(1)
    return False


def main() -> int:
    settings = load_settings()
    body = sample_request(settings.home / "sample_request.json")
    servers = [
        subprocess.Popen(["dagster", "dev", "-w", "workspace.yaml", "-p", str(DAGSTER_PORT)]),
        subprocess.Popen(["bentoml", "serve", "churn_service:latest", "--port", str(BENTO_PORT)]),
    ]
    try:
        ready = _wait_for(f"http://localhost:{BENTO_PORT}/readyz", 120)
        _wait_for(f"http://localhost:{DAGSTER_PORT}/server_info", 120)
        print(
            "\n"
            f"  Dagster UI:      http://localhost:{DAGSTER_PORT}\n"
            f"  Scoring service: http://localhost:{BENTO_PORT}  (OpenAPI: /docs.json)"
            f"{'' if ready else '  [not ready yet, see its log above]'}\n"
            f"  Try it:          curl -s -X POST http://localhost:{BENTO_PORT}/score "
            f"-H 'Content-Type: application/json' -d @{body}\n"
            "  Stop with Ctrl-C.\n",
            flush=True,
        )
        while all(server.poll() is None for server in servers):
            time.sleep(1)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for server in servers:
            if server.poll() is None:
                server.send_signal(signal.SIGINT)
        for server in servers:
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    sys.exit(main())
