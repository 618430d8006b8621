"""The review inbox's page and HTTP API (``/desk/review``, ``/desk/api/review/…``), for
designers and admins. Login, session cookie and CSRF header are the desk's."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from bot.api.errors import ApiError, read_json
from bot.api.keys import SETTINGS
from bot.desk.api import asset, page, query_time, require, session_of
from bot.handoff.records import UserRole
from bot.review.collect import collect
from bot.review.grouping import group
from bot.review.jobs import JobBusy, RetrainJobs, in_thread
from bot.review.nlu_edit import (
    OUT_OF_SCOPE,
    NluEditError,
    append_examples,
    clean_example,
    intent_files,
)
from bot.store import create_engine
from bot.store.schema import ReviewDecisionRow, TurnRow, utcnow

DESIGNERS = (UserRole.DESIGNER, UserRole.ADMIN)
DEFAULT_DAYS = 7
MAX_DAYS = 92
MAX_TURNS_PER_DECISION = 5000


@dataclass
class ReviewState:
    engine: AsyncEngine
    jobs: RetrainJobs
    edit_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


REVIEW = web.AppKey("review_state", ReviewState)


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    turn_ids: list[int] = Field(..., min_length=1, max_length=MAX_TURNS_PER_DECISION)
    action: Literal["assign", "new_intent", "out_of_scope", "ignore"]
    intent: str | None = Field(None, min_length=1, max_length=100)


def _period(request: web.Request) -> tuple[datetime, datetime]:
    end = query_time(request, "to", empty_is_missing=True) or datetime.now(UTC)
    start = query_time(request, "from", empty_is_missing=True) or end - timedelta(days=DEFAULT_DAYS)
    if start >= end:
        raise ApiError(422, "invalid_request", "from must be before to")
    if end - start > timedelta(days=MAX_DAYS):
        raise ApiError(422, "invalid_request", f"at most {MAX_DAYS} days at a time")
    return start, end


@require(*DESIGNERS)
async def me(request: web.Request) -> web.Response:
    sess = session_of(request)
    u = sess.user
    return web.json_response(
        {
            "user": {"id": u.id, "username": u.username, "name": u.display_name, "role": u.role},
            "csrf_token": sess.csrf_token,
        }
    )


@require(*DESIGNERS)
async def groups(request: web.Request) -> web.Response:
    start, end = _period(request)
    settings = request.app[SETTINGS]
    cands = await collect(request.app[REVIEW].engine, start, end, settings.analytics.low_confidence)
    found = await in_thread(lambda: group(cands))
    return web.json_response(
        {
            "from": start.isoformat(),
            "to": end.isoformat(),
            "turns": len(cands),
            "groups": [g.as_json() for g in found],
            "low_confidence": settings.analytics.low_confidence,
        }
    )


@require(*DESIGNERS)
async def intents(request: web.Request) -> web.Response:
    project = request.app[SETTINGS].rasa_project
    labels = await in_thread(lambda: sorted(intent_files(project)))
    return web.json_response({"intents": labels})


@require(*DESIGNERS)
async def decide(request: web.Request) -> web.Response:
    body = await read_json(request, DecisionIn)
    state = request.app[REVIEW]
    project = request.app[SETTINGS].rasa_project
    if body.action in ("assign", "new_intent") and not body.intent:
        raise ApiError(422, "invalid_request", f"{body.action}: give the intent")
    intent = OUT_OF_SCOPE if body.action == "out_of_scope" else body.intent
    sessions = async_sessionmaker(state.engine, expire_on_commit=False)
    async with state.edit_lock:
        async with sessions() as s:
            rows = (
                await s.execute(
                    select(TurnRow.id, TurnRow.text).where(
                        TurnRow.id.in_(set(body.turn_ids)),
                        TurnRow.role == "user",
                        TurnRow.text.is_not(None),
                        ~select(ReviewDecisionRow.id)
                        .where(ReviewDecisionRow.turn_id == TurnRow.id)
                        .exists(),
                    )
                )
            ).all()
        if not rows:
            raise ApiError(409, "nothing_to_decide", "those turns are decided already or unknown")
        texts = list(dict.fromkeys(str(r.text) for r in rows))
        result_json: dict[str, Any] | None = None
        added: set[str] = set()
        file: str | None = None
        if body.action != "ignore":
            assert intent is not None
            try:
                result = await in_thread(
                    lambda: append_examples(
                        project, intent, texts, new_intent=body.action == "new_intent"
                    )
                )
            except NluEditError as exc:
                raise ApiError(422, "nlu_edit_failed", str(exc)) from exc
            result_json = result.as_json(project)
            file = result_json["file"]
            added = set(result.added)
        now = utcnow()
        user_id = session_of(request).user.id
        try:
            async with sessions.begin() as s:
                for r in rows:
                    s.add(
                        ReviewDecisionRow(
                            turn_id=r.id,
                            action=body.action,
                            intent=intent,
                            text=str(r.text),
                            file=file,
                            added=clean_example(str(r.text)) in added,
                            decided_by=user_id,
                            created_at=now,
                        )
                    )
        except IntegrityError as exc:
            raise ApiError(409, "decided_already", "someone decided these turns meanwhile") from exc
    return web.json_response(
        {
            "decided": len(rows),
            "action": body.action,
            "intent": intent,
            "result": result_json,
            "retrain_needed": bool(added),
        }
    )


@require(*DESIGNERS)
async def retrain(request: web.Request) -> web.Response:
    try:
        job = request.app[REVIEW].jobs.start(session_of(request).user.username)
    except JobBusy as exc:
        raise ApiError(409, "job_running", f"a retrain is running: job {exc.job.id}") from exc
    return web.json_response({"job": job.as_json()}, status=202)


@require(*DESIGNERS)
async def job_status(request: web.Request) -> web.Response:
    jobs = request.app[REVIEW].jobs
    job_id = request.match_info["job_id"]
    job = jobs.latest() if job_id == "latest" else jobs.get(job_id)
    if job is None:
        raise ApiError(404, "job_not_found", "no such job")
    return web.json_response({"job": job.as_json()})


# -- wiring --------------------------------------------------------------------------------
def _not_a_designer() -> ApiError:
    return ApiError(403, "forbidden", "the review inbox is for designers and admins")


async def _startup(app: web.Application) -> None:
    settings = app[SETTINGS]
    app[REVIEW] = ReviewState(
        engine=create_engine(settings.database_url, echo=settings.database.echo),
        jobs=RetrainJobs(settings),
    )


async def _cleanup(app: web.Application) -> None:
    state = app.get(REVIEW)
    if state is not None:
        await state.jobs.close()
        await state.engine.dispose()


def add_routes(app: web.Application) -> None:
    """Routes of the review inbox; its state starts after the app's resources (migrations)."""
    r = app.router
    r.add_get("/desk/review", page("review.html", DESIGNERS, _not_a_designer))
    r.add_get("/desk/review.js", asset("review.js"))
    r.add_get("/desk/api/review/me", me)
    r.add_get("/desk/api/review/groups", groups)
    r.add_get("/desk/api/review/intents", intents)
    r.add_post("/desk/api/review/decisions", decide)
    r.add_post("/desk/api/review/retrain", retrain)
    r.add_get("/desk/api/review/jobs/{job_id}", job_status)
    app.on_startup.append(_startup)
    app.on_cleanup.append(_cleanup)
