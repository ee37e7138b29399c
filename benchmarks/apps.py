"""Shared by the two reference servers: load the champion exactly as the Bento does.

Both reference apps (``benchmarks.bare_app``, ``benchmarks.fastapi_app``) read the same model from
the BentoML store (``CHURN_MODEL_TAG``, default ``churn_model:latest``) with one OpenMP thread and
one LightGBM thread, so the three servers differ only in the framework and the per-request work.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

from churn import registry
from churn.modeling.spec import specs_from_dicts
from serving.schemas import Schemas, build_schemas


def load_champion() -> tuple[registry.RegisteredModel, Schemas]:
    """The stored model (LightGBM pinned to one thread) and the service's request schemas."""
    tag = os.environ.get("CHURN_MODEL_TAG") or f"{registry.MODEL_NAME}:latest"
    loaded = registry.load_model(tag)
    if hasattr(loaded.model, "num_threads"):
        loaded.model.num_threads = 1
    schemas = build_schemas(loaded.card, specs_from_dicts(loaded.card["feature_schema"]))
    return loaded, schemas


def serve(app: Any, description: str | None, default_port: int) -> None:
    """Run a reference app as the benchmarks do: one uvicorn worker, no access log,
    ``--port`` from the command line."""
    import uvicorn

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=default_port)
    args = parser.parse_args()
    uvicorn.run(
        app, host="127.0.0.1", port=args.port, workers=1, access_log=False, log_level="warning"
    )
