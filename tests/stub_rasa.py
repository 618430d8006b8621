"""A scripted stand-in for the Rasa server, for tests about what happens around the dialogue
(hold, recording): the bot service talks to it over HTTP exactly as to Rasa (REST webhook,
tracker, status), and it answers from a script, so a test can have the bot mark a sensitive
step without training a model for it."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# (sender, text) -> (intent, replies in the REST channel's format)
Script = Callable[[str, str], tuple[str, list[dict[str, Any]]]]


def fallback_script(sender: str, text: str) -> tuple[str, list[dict[str, Any]]]:
    return "nlu_fallback", [{"text": "Sorry, I didn't get that."}]


@dataclass
class StubRasa:
    script: Script = fallback_script
    received: list[str] = field(default_factory=list)
    latest: dict[str, str] = field(default_factory=dict)  # sender -> last intent
    url: str = ""


@contextmanager
def stub_rasa(script: Script = fallback_script) -> Iterator[StubRasa]:
    stub = StubRasa(script)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _json(self, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path == "/status":
                self._json({"model_file": "stub.tar.gz"})
            elif path.startswith("/conversations/") and path.endswith("/tracker"):
                sender = path.split("/")[2]
                with lock:
                    intent = stub.latest.get(sender, "nlu_fallback")
                self._json(
                    {
                        "sender_id": sender,
                        "latest_message": {
                            "intent": {"name": intent, "confidence": 0.95},
                            "entities": [],
                        },
                    }
                )
            else:
                self.send_error(404)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            path = self.path.split("?")[0]
            if path == "/webhooks/rest/webhook":
                text, sender = str(body.get("message", "")), str(body.get("sender"))
                with lock:
                    stub.received.append(text)
                    intent, replies = stub.script(sender, text)
                    stub.latest[sender] = intent
                self._json([{"recipient_id": body.get("sender"), **r} for r in replies])
            elif path == "/model/parse":
                self._json({"intent": {"name": "nlu_fallback", "confidence": 0.5}})
            else:
                self.send_error(404)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
