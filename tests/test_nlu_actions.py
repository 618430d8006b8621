"""Custom actions run in the Rasa virtualenv, where the action server runs them: the booking
is POSTed as JSON to RECEPTIONIST_BOOKINGS_URL, and a failed POST is told to the user."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bot.config import load_settings
from tests.procs import ROOT, free_port

SCRIPT = """
import asyncio, json
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from actions.actions import ActionSubmitBooking

slots = {"service": "sports_massage", "appointment_time": "2031-03-12T10:00:00+00:00",
         "customer_name": "Jane Doe", "phone": "+447912345678"}
tracker = Tracker("conv-123", slots, {"intent": {"name": "affirm"}}, [], False, None,
                  {}, "action_listen")
d = CollectingDispatcher()
events = asyncio.run(ActionSubmitBooking().run(d, tracker, {}))
print(json.dumps({"messages": [m.get("text") for m in d.messages], "events": events}))
"""


class Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []
    status = 201

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append(json.loads(body))
        self.send_response(Receiver.status)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.received = []
    Receiver.status = 201
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/bookings"
    finally:
        server.shutdown()
        server.server_close()


def submit(url: str | None) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("RECEPTIONIST_BOOKINGS_URL", None)
    if url:
        env["RECEPTIONIST_BOOKINGS_URL"] = url
    python = load_settings().rasa_venv / "bin" / "python"
    proc = subprocess.run(
        [str(python), "-c", SCRIPT],
        cwd=ROOT / "nlu-data",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_booking_is_posted_as_json(receiver: str) -> None:
    out = submit(receiver)
    assert Receiver.received == [
        {
            "type": "booking",
            "conversation_id": "conv-123",
            "service": {
                "id": "sports_massage",
                "name": "sports massage",
                "price": 55.0,
                "currency": "GBP",
                "duration_minutes": 60,
            },
            "start": "2031-03-12T10:00:00+00:00",
            "timezone": "Europe/London",
            "customer": {"name": "Jane Doe", "phone": "+447912345678"},
        }
    ]
    assert out["messages"][0].startswith("You're booked in on Wednesday 12 March at 10 am")
    assert {e["name"] for e in out["events"]} == {"service", "appointment_time"}


def test_rejected_post_tells_the_user_a_colleague_will_confirm(receiver: str) -> None:
    Receiver.status = 500
    out = submit(receiver)
    assert len(Receiver.received) == 1
    assert "a colleague will confirm it by phone on +447912345678" in out["messages"][0]


def test_unreachable_url_tells_the_user_a_colleague_will_confirm() -> None:
    out = submit(f"http://127.0.0.1:{free_port()}/bookings")
    assert "a colleague will confirm it" in out["messages"][0]


def test_without_url_nothing_is_sent() -> None:
    out = submit(None)
    assert "a colleague will confirm it" in out["messages"][0]
