"""``GET /desk/api/recordings/{conversation_id}``: who may hear a call recording, and that it
streams with byte ranges. Real bot service; Rasa is a scripted stand-in (no dialogue)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import numpy as np
import pytest

from media_server.recording import CallRecorder
from tests.procs import BotService, instance_settings
from tests.stub_rasa import StubRasa, stub_rasa
from tests.test_desk import Desk, add_user

PEOPLE = [
    ("ana", "agent", "general:2", "Ana"),
    ("ben", "agent", "general:2", "Ben"),
    ("sue", "supervisor", "general:1", "Sue"),
    ("dan", "designer", "general:1", "Dan"),
]


@pytest.fixture(scope="module")
def rasa_stub() -> Iterator[StubRasa]:
    with stub_rasa() as stub:
        yield stub


@pytest.fixture(scope="module")
def svc(rasa_stub: StubRasa, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotService]:
    settings, env = instance_settings(
        tmp_path_factory.mktemp("rec-api"),
        RECEPTIONIST_RASA__URL=rasa_stub.url,
        RECEPTIONIST_HANDOFF__ROUTER_INTERVAL_S="0.2",
    )
    bot = BotService(settings, env)
    for person in PEOPLE:
        add_user(bot, *person)
    bot.start()
    try:
        yield bot
    finally:
        bot.stop()


@pytest.fixture
async def staff(svc: BotService) -> AsyncIterator[dict[str, Desk]]:
    people = {name: await Desk(svc.url).login(name) for name, *_ in PEOPLE}
    try:
        yield people
    finally:
        for p in people.values():
            await p.close()


def record(svc: BotService, cid: str) -> bytes:
    """What the media server would have written for the call."""
    rec_dir = svc.settings.recordings_path
    rec_dir.mkdir(parents=True, exist_ok=True)
    rec = CallRecorder(rec_dir / f"{cid}.wav")
    for i in range(50):
        rec.caller(np.full(320, i * 10, dtype=np.int16).tobytes())
    rec.close()
    return rec.path.read_bytes()


async def get(who: Desk | aiohttp.ClientSession, url: str, **headers: str) -> tuple[int, bytes]:
    http = who.http if isinstance(who, Desk) else who
    async with http.get(url, headers=headers) as r:
        return r.status, await r.read()


async def test_recordings_are_served_to_the_agent_of_the_call_and_supervisors(
    svc: BotService, staff: dict[str, Desk]
) -> None:
    cid = svc.new_conversation(channel="voice")
    status, _ = svc.api("POST", f"/conversations/{cid}/handoff", {"reason": "dtmf_zero"})
    assert status == 200
    ana = staff["ana"]
    await ana.connect()
    await ana.available()
    offer = await ana.offer_for(cid)
    await ana.call("POST", f"/desk/api/tickets/{offer['ticket']['id']}/accept")
    await ana.call("POST", "/desk/api/presence", {"presence": "offline"})
    wav = record(svc, cid)
    url = f"{svc.url}/desk/api/recordings/{cid}"

    async with ana.http.get(url) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "audio/wav"
        assert r.headers.get("Accept-Ranges") == "bytes"
        assert await r.read() == wav
    assert await get(ana, url, Range="bytes=0-43") == (206, wav[:44])  # seeking works
    assert await get(staff["sue"], url) == (200, wav)

    assert (await get(staff["ben"], url))[0] == 403  # another agent's call
    assert (await get(staff["dan"], url))[0] == 403  # designers do not hear calls
    async with aiohttp.ClientSession() as anonymous:
        assert (await get(anonymous, url))[0] == 401

    other = svc.new_conversation(channel="voice")  # no recording
    assert (await get(staff["sue"], f"{svc.url}/desk/api/recordings/{other}"))[0] == 404
    assert (await get(staff["sue"], f"{svc.url}/desk/api/recordings/{'0' * 32}"))[0] == 404
    for bad in ("..%2F..%2Fsecrets%2Frasa-token", "ABC", cid + ".wav"):
        assert (await get(staff["sue"], f"{svc.url}/desk/api/recordings/{bad}"))[0] == 404
