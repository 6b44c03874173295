"""The job API: start `cnnlab train` from the page, watch it (Server-Sent Events), cancel it.

POST   /api/jobs            {TrainConfig fields, "recipe", "name"} or {"resume": NAME} -> 202
GET    /api/jobs            every job;  GET /api/jobs/options  recipes, models, datasets
GET    /api/jobs/ID         {"state", "progress", "metrics", "error", ...}
GET    /api/jobs/ID/events  text/event-stream: one `data: {json}` per event, until it ends
DELETE /api/jobs/ID         cancel (SIGINT: the run folder stays resumable)
GET    /login?token=        sets the token cookie (servers not on loopback), then /train
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from cnnlab.web.auth import COOKIE, require_json, require_token, same_token
from cnnlab.web.errors import ERRORS
from cnnlab.web.jobs import JobManager, JobNotFound, JobSettings, QueueFull

router = APIRouter(responses=ERRORS, tags=["jobs"])
jobs_api = APIRouter(dependencies=[Depends(require_token), Depends(require_json)])
SSE_POLL_S = 0.25  # how often a stream looks for new events


def get_jobs(request: Request) -> JobManager:
    """The app's job manager."""
    return request.app.state.jobs


JobsDep = Annotated[JobManager, Depends(get_jobs)]


def install(app: FastAPI, settings: JobSettings | None) -> None:
    """Give the app its job manager, and stop its jobs when the server stops."""
    app.state.jobs = JobManager(app.state.registry.runs_dir, settings or JobSettings())
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a):
        async with inner(a) as state:
            try:
                yield state
            finally:
                await run_in_threadpool(app.state.jobs.shutdown)

    app.router.lifespan_context = lifespan


def _job(jobs: JobManager, job_id: str):
    """The job, or 404 JSON."""
    try:
        return jobs.get(job_id)
    except JobNotFound as e:
        raise HTTPException(404, str(e)) from None


@jobs_api.post("/api/jobs", status_code=202, summary="Start a training job")
async def start_job(request: Request, jobs: JobsDep):
    """Queue `cnnlab train` with these settings (TrainConfig's field names, `recipe`, `name`),
    or `{"resume": NAME}`; 400 names a bad field, 429 when the queue is full."""
    try:
        body = json.loads(await request.body())
    except (ValueError, RecursionError):
        raise HTTPException(400, "the body is not valid JSON") from None
    try:
        job = await run_in_threadpool(jobs.submit, body)
    except QueueFull as e:
        return JSONResponse({"error": str(e)}, status_code=429, headers={"Retry-After": "10"})
    return {"id": job.id, "run": job.run, "state": job.state}


@jobs_api.get("/api/jobs", summary="Every job of this server")
def list_jobs(jobs: JobsDep) -> dict:
    """Newest first."""
    return {"jobs": jobs.listing(), "max_jobs": jobs.settings.max_jobs, "queue": jobs.settings.queue}


@jobs_api.get("/api/jobs/options", summary="What a job may choose")
def job_options(jobs: JobsDep) -> dict:
    """Recipes (with their settings), models, datasets and the image folders under --data-dir."""
    from cnnlab.config import RECIPES
    from cnnlab.data.datasets import DATASETS
    from cnnlab.models import list_models

    base = jobs.settings.data_dir
    folders = (
        sorted(p.name for p in base.iterdir() if p.is_dir())[:200] if base and base.is_dir() else []
    )
    return {
        "recipes": RECIPES,
        "models": list_models(),
        "datasets": [*DATASETS, *("imagefolder:" + f for f in folders)],
        "runs_dir": jobs.runs_dir is not None,
    }


@jobs_api.get("/api/jobs/{job_id}", summary="One job")
def get_job(job_id: str, jobs: JobsDep) -> dict:
    """Its state (queued, running, done, failed, cancelled), progress, metrics and error."""
    return _job(jobs, job_id).public()


@jobs_api.delete("/api/jobs/{job_id}", summary="Cancel a job")
def cancel_job(job_id: str, jobs: JobsDep) -> dict:
    """A queued job is dropped; a running one stops (SIGINT), its run folder resumable."""
    _job(jobs, job_id)
    return jobs.cancel(job_id).public()


@jobs_api.get("/api/jobs/{job_id}/events", summary="A job's events, as they come")
async def job_events(job_id: str, jobs: JobsDep) -> StreamingResponse:
    """Server-Sent Events: every event so far, then each new one, closing when the job ends."""
    job = _job(jobs, job_id)

    async def stream():
        sent = 0
        yield f"data: {json.dumps({'event': 'job', **job.public()})}\n\n"
        while True:
            new = job.events[sent:]
            for event in new:
                yield f"data: {json.dumps(event)}\n\n"
            sent += len(new)
            if (job.ended and sent >= len(job.events)) or jobs.closing:
                return
            await asyncio.sleep(SSE_POLL_S)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


@router.get("/login", include_in_schema=False)
def login(request: Request, token: str = Query("", max_length=200)):
    """Set the token cookie from the URL cnnlab serve printed, then show the Train page."""
    settings_token = request.app.state.jobs.settings.token
    if settings_token is not None and not same_token(token, settings_token):
        raise HTTPException(401, "this token is not the one cnnlab serve printed")
    answer = RedirectResponse("/train", status_code=303)
    if settings_token is not None:
        answer.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
    return answer


router.include_router(jobs_api)
