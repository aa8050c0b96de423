"""/readyz and /metrics: parse the request, ask digest.operations, answer. (/healthz, liveness,
is in routes: it answers while the process serves and asks nothing.)"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from digest import operations
from digest.web.deps import settings_of, unit_of_work

router = APIRouter()


@router.get("/readyz")
async def readyz(request: Request):
    def work():
        with unit_of_work(request) as session:
            result = operations.readiness(session, settings_of(request))
        return JSONResponse(result.as_dict(), status_code=200 if result.ready else 503)

    return await run_in_threadpool(work)


@router.get("/metrics")
async def metrics(request: Request):
    settings = settings_of(request)
    if not settings.metrics:
        return JSONResponse({"error": "metrics are off: set DIGEST_METRICS=1"}, status_code=404)
    if not operations.scrape_allowed(settings, request.headers.get("authorization")):
        return JSONResponse({"error": "a bearer token is required"}, status_code=401,
                            headers={"WWW-Authenticate": 'Bearer realm="metrics"'})

    def work():
        with unit_of_work(request) as session:
            return Response(operations.metrics_text(session), media_type=operations.METRICS_CONTENT_TYPE)

    return await run_in_threadpool(work)
