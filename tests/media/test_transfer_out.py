"""Transfer out: a skill configured with a SIP URI (``handoff.transfer_to``) sends its phone
calls there instead of queueing them for the desk. Over SIP with a REFER: SIPp plays the
caller's phone, which receives the REFER and reports the new call's fate in NOTIFYs; the
real bot records the outcome (the ticket closed as transferred, or still queued when it
failed). Over AudioSocket the call goes back to the dialplan, which reads the target over
HTTP (Asterisk itself is not installable here: a protocol-level client stands in)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from tests.conftest import bot_for
from tests.media.sip_peer import (
    call_ended,
    conversation,
    conversations_of,
    rtp_recorder,
    run_sipp,
    sipp_log,
)
from tests.media.test_voice_calls import AudioSocketCaller
from tests.procs import BotService, MediaService, RasaStack, media_for, serving

TARGET = "sip:desk@127.0.0.1:5999"


@pytest.fixture(scope="module")
def transfer_bot(rasa: RasaStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotService]:
    yield from serving(
        bot_for(
            rasa,
            tmp_path_factory.mktemp("transfer-bot"),
            RECEPTIONIST_HANDOFF__TRANSFER_TO=f'{{"general": "{TARGET}"}}',
        )
    )


@pytest.fixture(scope="module")
def transfer_media(
    transfer_bot: BotService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MediaService]:
    yield from media_for(
        transfer_bot,
        tmp_path_factory.mktemp("transfer-media"),
        RECEPTIONIST_MEDIA__SIP_RING_MS="200",
        RECEPTIONIST_MEDIA__SIP_TRANSFER_TIMEOUT_S="15",
        RECEPTIONIST_MEDIA__AUDIOSOCKET_TRANSFER="true",
    )


def _new_call(media: MediaService, before: set[str]) -> tuple[str, str]:
    calls = {k: v for k, v in conversations_of(media).items() if k not in before}
    assert len(calls) == 1, calls
    return next(iter(calls.items()))


def _events(conv: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in conv["events"] if e["type"] == kind]


def test_only_waiting_phone_calls_of_the_skill_are_transferred(transfer_bot: BotService) -> None:
    voice = transfer_bot.new_conversation(channel="voice")
    status, queue = transfer_bot.api("POST", f"/conversations/{voice}/handoff", {})
    assert status == 200 and queue["transfer_to"] == TARGET, queue
    other = transfer_bot.new_conversation(channel="voice")
    status, queue = transfer_bot.api(
        "POST", f"/conversations/{other}/handoff", {"skill": "billing"}
    )
    assert status == 200 and queue["transfer_to"] is None, queue  # no target for billing
    chat = transfer_bot.new_conversation(channel="webchat")
    status, queue = transfer_bot.api("POST", f"/conversations/{chat}/handoff", {})
    assert status == 200 and queue["transfer_to"] is None, queue  # a chat cannot be referred
    # the report is validated and needs a known conversation
    status, err = transfer_bot.api(
        "POST", f"/conversations/{voice}/transferred", {"target": "http://x", "ok": True}
    )
    assert status == 422, err
    status, err = transfer_bot.api(
        "POST", f"/conversations/{'0' * 32}/transferred", {"target": TARGET, "ok": True}
    )
    assert status == 404, err


async def test_refer_accepted_and_the_target_answers(
    transfer_media: MediaService, transfer_bot: BotService, tmp_path: Path
) -> None:
    before = set(conversations_of(transfer_media))
    async with rtp_recorder() as (_rec, rtp_port):
        proc = await run_sipp(
            transfer_media, "transfer_accepted.xml", tmp_path, "-set", "rtpport", str(rtp_port)
        )
    # the scenario checked the REFER (Refer-To with the id) and received the bot's BYE
    assert proc.returncode == 0, sipp_log(tmp_path, proc)
    call_id, cid = _new_call(transfer_media, before)
    messages = _sipp_messages(tmp_path)
    refer_to = re.findall(r"Refer-To: <([^>]+)>", messages)
    assert refer_to == [f"{TARGET}?X-Receptionist-Conversation-Id={cid}"], refer_to
    assert f"X-Receptionist-Conversation-Id: {cid}" in messages

    conv = conversation(transfer_bot, cid)
    assert conv["status"] == "closed"
    [done] = _events(conv, "transferred_out")
    assert done["data"]["target"] == TARGET and done["data"]["ticket_id"]
    assert not _events(conv, "abandoned"), conv["events"]  # resolved, not abandoned
    texts = [t["text"] for t in conv["transcript"]]
    assert f"The call was transferred to {TARGET}." in texts
    # a downstream system fetches the transcript by the id the REFER carried
    status, fetched = transfer_bot.api("GET", f"/conversations/{cid}")
    assert status == 200 and fetched["transcript"], fetched
    ended = call_ended(transfer_media, call_id)
    assert ended["reason"] == "transferred"


@pytest.mark.parametrize(
    ("scenario", "detail"),
    [
        ("transfer_busy.xml", "the transfer target answered 486"),
        ("transfer_refused.xml", "REFER answered 603 Declined"),
    ],
)
async def test_failed_transfer_keeps_the_caller_queued(
    transfer_media: MediaService,
    transfer_bot: BotService,
    tmp_path: Path,
    scenario: str,
    detail: str,
) -> None:
    before = set(conversations_of(transfer_media))
    async with rtp_recorder() as (rec, rtp_port):
        proc = await run_sipp(transfer_media, scenario, tmp_path, "-set", "rtpport", str(rtp_port))
    assert proc.returncode == 0, sipp_log(tmp_path, proc)  # the caller hung up, 200
    call_id, cid = _new_call(transfer_media, before)
    conv = conversation(transfer_bot, cid)
    [failed] = _events(conv, "transfer_failed")
    assert failed["data"] == {"target": TARGET, "detail": detail}, failed
    assert not _events(conv, "transferred_out")
    # it stayed in the queue until the caller hung up: an abandoned wait
    assert _events(conv, "abandoned"), conv["events"]
    assert call_ended(transfer_media, call_id)["reason"] == "caller_hangup"
    assert any(e["call_id"] == call_id for e in transfer_media.log_events("media.transfer.failed"))
    # after the apology the caller heard hold music until hanging up: the bot's RTP went on
    [packets] = rec.packets.values()
    assert packets[-1][0] - packets[0][0] > 8, "greeting, apology, then music on hold"


def _sipp_messages(workdir: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in workdir.glob("*_messages.log"))


async def test_audiosocket_call_goes_back_to_the_dialplan_with_its_target(
    transfer_media: MediaService, transfer_bot: BotService
) -> None:
    silence = np.zeros(1600, dtype=np.int16)  # 200 ms
    async with AudioSocketCaller(transfer_media.settings.media.audiosocket_port) as call:
        await call.play(np.tile(silence, 15))  # the greeting plays meanwhile
        call.send(0x03, b"0")  # a person, please
        deadline = time.monotonic() + 30
        while call.hangup_at is None and time.monotonic() < deadline:
            try:
                await call.play(silence)
            except ConnectionResetError:  # it hung up and closed while we were sending
                await asyncio.sleep(0.5)  # the reader has the hang-up message by now
                break
        assert call.hangup_at is not None, "the receptionist never handed the call back"
        told = call.speech_since(call.hangup_at - 6)
        assert len(told) > 4000, "the caller heard the transfer announced"
    # what the dialplan does after AudioSocket() returns: CURL the target, then Dial it
    base = f"{transfer_media.url}/media/audiosocket"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/{call.uuid}/transfer") as r:
            assert r.status == 200 and await r.text() == TARGET
        async with http.get(f"{base}/{call.uuid}/transfer?field=conversation_id") as r:
            assert r.status == 200
            cid = await r.text()
        async with http.get(f"{base}/{call.uuid}/transfer?field=nope") as r:
            assert r.status == 400
        async with http.get(f"{base}/00000000-0000-0000-0000-000000000000/transfer") as r:
            assert r.status == 404  # not transferred: the dialplan hangs up
    conv = conversation(transfer_bot, cid)
    [done] = _events(conv, "transferred_out")
    assert done["data"]["target"] == TARGET
    assert conv["status"] == "closed"
