"""(b) The framework-free reference: the same model and validation as the Bento, on bare
Starlette + uvicorn (one worker).

Per request it does exactly the service's application work minus the framework: parse and
validate the body with the service's own pydantic model (``serving.schemas``), score with
``churn.scoring.scorer.Scorer`` (one model call, reasons, tiers), and write JSON (a batch with
pydantic-core's serializer, like the service). It does not write
prediction logs (the Bento does), so it is the strict reference for the 0.5x target.

    python -m benchmarks.bare_app --port 3102
"""

from __future__ import annotations

import gc

from pydantic import ValidationError
from pydantic_core import to_json
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from benchmarks.apps import load_champion, serve
from churn.scoring.scorer import Scorer

LOADED, SCHEMAS = load_champion()
SCORER = Scorer(LOADED.model, LOADED.card, LOADED.version)
ScoreRequest = SCHEMAS.score_request
BatchRequest = SCHEMAS.batch_request


def _invalid(error: ValidationError) -> Response:
    detail = error.errors(include_context=False, include_input=False, include_url=False)
    return JSONResponse({"error": str(error.title), "detail": detail}, status_code=400)


async def score(request: Request) -> Response:
    try:
        payload = ScoreRequest.model_validate_json(await request.body())
    except ValidationError as error:
        return _invalid(error)
    scored = SCORER.score([payload.customer_id], [payload.features], payload.threshold)
    return JSONResponse(scored.scores[0])


async def score_batch(request: Request) -> Response:
    try:
        payload = BatchRequest.model_validate_json(await request.body())
    except ValidationError as error:
        return _invalid(error)
    rows = payload.customers
    scored = SCORER.score(
        [row["customer_id"] for row in rows],
        [row["features"] for row in rows],
        payload.threshold,
    )
    return Response(to_json({"scores": scored.scores}), media_type="application/json")


app = Starlette(
    routes=[
        Route("/score", score, methods=["POST"]),
        Route("/score_batch", score_batch, methods=["POST"]),
    ]
)
gc.collect()
gc.freeze()


def main() -> None:
    serve(app, __doc__, default_port=3102)


if __name__ == "__main__":
    main()
