"""Restarts and outages: nothing is lost, nothing crashes, the user always gets an answer."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.conversation_service import APOLOGY
from tests.conftest import bot_for, running_rasa
from tests.procs import ROOT, BotService, Postgres, RasaStack, http_json, instance_settings


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stop", "kill-9"])
def test_bot_restart_keeps_conversation(rasa: RasaStack, tmp_path: Path, how: int) -> None:
    svc = bot_for(rasa, tmp_path)
    svc.start()
    try:
        cid = svc.new_conversation(customer={"name": "Ana"})
        svc.say(cid, "hello")
        svc.say(cid, "what are your opening hours")
        before = svc.api("GET", f"/conversations/{cid}")[1]
        svc.stop(how)
        svc.start()
        after = svc.api("GET", f"/conversations/{cid}")[1]
        assert after == before
        assert [t["role"] for t in after["transcript"]] == ["user", "bot", "user", "bot"]
        res = svc.say(cid, "where are you")
        assert res["user_turn"]["seq"] == 5
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def own_rasa(rasa_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RasaStack]:
    """A Rasa stack of its own, which this module stops and restarts."""
    yield from running_rasa(tmp_path_factory.mktemp("own-rasa"), rasa_model)


def test_rasa_outage_apologises_and_records_handoff(own_rasa: RasaStack, tmp_path: Path) -> None:
    svc = bot_for(own_rasa, tmp_path)
    svc.start()
    try:
        cid = svc.new_conversation()
        assert "virtual receptionist" in svc.say(cid, "hello")["replies"][0]["text"]

        own_rasa.stop_server(signal.SIGKILL)  # Rasa dies mid-conversation
        res = svc.say(cid, "what are your opening hours")
        assert [r["text"] for r in res["replies"]] == [APOLOGY]
        assert res["handoff"]["reason"] == "dependency_down"
        assert res["handoff"]["detail"] == "rasa_unreachable"
        conv = svc.api("GET", f"/conversations/{cid}")[1]
        assert conv["status"] == "handoff_requested"
        types = [e["type"] for e in conv["events"]]
        assert "dependency_down" in types and "handoff_requested" in types
        assert conv["transcript"][2]["text"] == "what are your opening hours"
        status, ready = http_json("GET", svc.url + "/readyz")
        assert status == 503 and ready["checks"]["rasa"]["ok"] is False
        assert ready["checks"]["database"]["ok"] is True

        own_rasa.start_server()  # Rasa restarts: its SQL tracker store kept the dialogue
        token = own_rasa.settings.rasa_token()
        status, tracker = http_json(
            "GET", f"{own_rasa.settings.rasa.base_url}/conversations/{cid}/tracker?token={token}"
        )
        assert status == 200
        said = [e.get("text") for e in tracker["events"] if e.get("event") == "user"]
        assert "hello" in said
        assert http_json("GET", svc.url + "/readyz")[0] == 200
        # the first conversation waits for a person: the bot stays silent there
        held = svc.say(cid, "hello again?")
        assert held["replies"] == [] and held["queue"]["status"] == "queued"
        # new conversations are answered by the recovered bot
        fresh = svc.new_conversation()
        assert "Harbour Street" in svc.say(fresh, "where are you located")["replies"][0]["text"]
    finally:
        svc.stop()


def test_slow_rasa_times_out_into_apology(rasa: RasaStack, tmp_path: Path) -> None:
    svc = bot_for(rasa, tmp_path, RECEPTIONIST_RASA__TIMEOUT_S="0.001")
    svc.start()
    try:
        cid = svc.new_conversation()
        res = svc.say(cid, "what are your opening hours")
        assert [r["text"] for r in res["replies"]] == [APOLOGY]
        assert res["handoff"]["detail"] == "rasa_timeout"
    finally:
        svc.stop()


@pytest.mark.postgres
def test_bot_service_on_postgresql(rasa: RasaStack, postgres: Postgres, tmp_path: Path) -> None:
    svc = bot_for(rasa, tmp_path, RECEPTIONIST_DATABASE__URL=postgres.url)
    svc.start()
    try:
        cid = svc.new_conversation(channel="webchat")
        res = svc.say(cid, "what are your opening hours", client_message_id="pg-1")
        assert "Monday" in res["replies"][0]["text"]
        assert svc.say(cid, "what are your opening hours", client_message_id="pg-1")["duplicate"]
        svc.stop(signal.SIGKILL)
        svc.start()
        conv = svc.api("GET", f"/conversations/{cid}")[1]
        assert [t["text"][:20] for t in conv["transcript"]] == [
            "what are your openin",
            "We're open Monday to",
        ]
        assert http_json("GET", svc.url + "/readyz")[1]["checks"]["database"]["ok"] is True
    finally:
        svc.stop()


@pytest.mark.parametrize(
    "url,fragment",
    [
        ("postgresql+asyncpg://u:pw@127.0.0.1:1/none", "cannot be used"),
        ("sqlite+aiosqlite:///:memory:", "not memory"),
        ("mysql://u:p@localhost/db", "supported"),
    ],
)
def test_broken_database_is_a_startup_error(tmp_path: Path, url: str, fragment: str) -> None:
    _, env = instance_settings(tmp_path, RECEPTIONIST_DATABASE__URL=url)
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "serve"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert fragment in proc.stderr
    assert "pw@" not in proc.stderr  # the password is never printed


def test_service_is_alive_without_rasa(tmp_path: Path) -> None:
    """No Rasa at all: the service starts, says it is not ready, and still answers users."""
    svc = BotService(*instance_settings(tmp_path))
    svc.start()
    try:
        status, ready = http_json("GET", svc.url + "/readyz")
        assert status == 503 and ready["checks"]["rasa"]["ok"] is False
        cid = svc.new_conversation()
        assert svc.say(cid, "hello")["replies"][0]["text"] == APOLOGY
    finally:
        svc.stop()
