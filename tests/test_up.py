"""`receptionist up` starts everything, prints the endpoints, and stops it all on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from tests.procs import ROOT, http_json, instance_settings


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("servers", [1, 2])
def test_up_serves_and_stops_cleanly(tmp_path: Path, rasa_model: Path, servers: int) -> None:
    settings, env = instance_settings(tmp_path, RECEPTIONIST_RASA__SERVERS=str(servers))
    log = tmp_path / "up.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "up"],
            cwd=ROOT,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240
        while "Press Ctrl-C" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.5)
        out = log.read_text()
        base = f"http://127.0.0.1:{settings.server.port}"
        assert f"{base}/api/v1/conversations" in out
        assert f"{base}/api/v1/openapi.json" in out
        assert f"{base}/readyz" in out
        assert re.search(r"ready in \d+\.\d+s", out)
        for url in settings.rasa.urls:  # each served a first message before any caller
            assert re.search(rf"Rasa at {re.escape(url)} warmed up in \d+\.\d+s", out), out
        media = f"127.0.0.1:{settings.media.port}"
        assert f"ws://{media}/media/browser" in out
        assert f"ws://{media}/media/twilio" in out
        assert f"tcp://127.0.0.1:{settings.media.audiosocket_port}" in out
        assert http_json("GET", f"http://{media}/healthz")[0] == 200
        status, ready = http_json("GET", f"http://{media}/readyz")
        assert status == 200 and ready["bot_service"] is True

        status, conv = http_json("POST", f"{base}/api/v1/conversations", {})
        assert status == 201
        status, res = http_json(
            "POST",
            f"{base}/api/v1/conversations/{conv['id']}/messages",
            {"text": "what are your opening hours"},
        )
        assert status == 200 and "Monday" in res["replies"][0]["text"]
        assert http_json("GET", f"{base}/readyz")[0] == 200

        if servers > 1:  # each conversation lives on one server, chosen by its id
            token = settings.rasa_token()
            urls = settings.rasa.urls
            for _ in range(6):
                cid = http_json("POST", f"{base}/api/v1/conversations", {})[1]["id"]
                http_json("POST", f"{base}/api/v1/conversations/{cid}/messages", {"text": "hi"})
                home = zlib.crc32(cid.encode()) % len(urls)
                for i, url in enumerate(urls):
                    tracker = http_json("GET", f"{url}/conversations/{cid}/tracker?token={token}")[
                        1
                    ]
                    said = [e for e in tracker["events"] if e.get("event") == "user"]
                    assert len(said) == (1 if i == home else 0)
            assert f"Rasa servers (local)  {urls[0]}, {urls[1]}" in out

        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
        assert proc.wait(60) == 0
        assert "[up] stopped." in log.read_text()
        ports = [settings.server.port, settings.rasa.actions_port, settings.media.port]
        ports.append(settings.media.audiosocket_port)
        ports += [settings.rasa.port + i for i in range(servers)]
        for port in ports:
            assert not _listening(port), f"port {port} still served after Ctrl-C"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_up_refuses_busy_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        _, env = instance_settings(tmp_path, RECEPTIONIST_SERVER__PORT=str(port))
        proc = subprocess.run(
            [sys.executable, "-m", "bot.cli", "up"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1
    assert f"server.port={port}" in proc.stderr
