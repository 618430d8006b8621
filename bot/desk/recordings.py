"""Call recordings for the desk: ``GET /desk/api/recordings/{conversation_id}``.

The media server writes ``<conversation_id>.wav`` into the recordings directory
(``media.recording_dir``, default ``<data_dir>/recordings``) and reports it to the
conversation as a ``voice.recording`` event. This serves the file to whoever may hear it:
supervisors and admins, and agents for the conversations whose ticket was theirs (assigned
or offered to them). The path is built from the settings and a validated id, never from
the request. Byte ranges work (``FileResponse``), so an ``<audio>`` element can seek.
"""

from __future__ import annotations

import re

from aiohttp import web

from bot.api.errors import ApiError
from bot.api.keys import HANDOFF, SERVICE, SETTINGS
from bot.desk.api import LEADS, STAFF, require, session_of
from bot.handoff.records import TicketStatus

_CONVERSATION_ID = re.compile(r"^[0-9a-f]{32}$")


async def _may_hear(request: web.Request, conversation_id: str) -> bool:
    user = session_of(request).user
    if user.role in LEADS:
        return True
    tickets = await request.app[HANDOFF].store.tickets(list(TicketStatus), user.id)
    return any(
        t.conversation_id == conversation_id and user.id in (t.agent_id, t.offered_to)
        for t in tickets
    )


@require(*STAFF)
async def recording(request: web.Request) -> web.StreamResponse:
    cid = request.match_info["conversation_id"]
    if not _CONVERSATION_ID.match(cid):
        raise ApiError(404, "conversation_not_found", f"conversation {cid!r:.60} not found")
    if await request.app[SERVICE].get(cid) is None:
        raise ApiError(404, "conversation_not_found", f"conversation {cid} not found")
    if not await _may_hear(request, cid):
        raise ApiError(403, "forbidden", "this conversation was not yours")
    path = request.app[SETTINGS].recordings_path / f"{cid}.wav"
    if not path.is_file():
        raise ApiError(404, "recording_not_found", "this conversation has no recording")
    return web.FileResponse(
        path,
        headers={
            "Content-Type": "audio/wav",
            "Cache-Control": "private, no-store",
            "Content-Disposition": f'inline; filename="{cid}.wav"',
        },
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/desk/api/recordings/{conversation_id}", recording)
