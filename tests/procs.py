"""Test helpers that start the real services as subprocesses on free ports."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from bot.config import Settings, load_settings
from bot.rasa_runtime import actions_command, actions_env, rasa_env, server_command

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_rtp_range(size: int = 200) -> dict[str, str]:
    """A random RTP port range for one media server (the server skips ports in use)."""
    low = 30000 + 2 * random.randrange(0, (60000 - 30000 - size) // 2)
    return {
        "RECEPTIONIST_MEDIA__RTP_PORT_MIN": str(low),
        "RECEPTIONIST_MEDIA__RTP_PORT_MAX": str(low + size - 1),
    }


def http_json(
    method: str,
    url: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    hdrs = {"Content-Type": "application/json"} if data is not None else {}
    hdrs.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        payload = e.read()
        try:
            return e.code, json.loads(payload)
        except ValueError:
            return e.code, payload.decode(errors="replace")


def wait_until(
    pred: Any,
    timeout: float,
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what}: process exited with {proc.returncode}\n{tail}")
        with contextlib.suppress(Exception):
            if pred():
                return
        time.sleep(0.25)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"{what} not ready after {timeout}s\n{tail}")


def instance_settings(data_dir: Path, **env: str) -> tuple[Settings, dict[str, str]]:
    """Settings for an isolated instance: own data dir and ports; the shared model dir."""
    overrides = {
        "RECEPTIONIST_HOME": str(ROOT),
        "RECEPTIONIST_DATA_DIR": str(data_dir),
        "RECEPTIONIST_SERVER__PORT": str(free_port()),
        "RECEPTIONIST_RASA__PORT": str(free_port()),
        "RECEPTIONIST_RASA__ACTIONS_PORT": str(free_port()),
        "RECEPTIONIST_MEDIA__PORT": str(free_port()),
        "RECEPTIONIST_MEDIA__AUDIOSOCKET_PORT": str(free_port()),
        "RECEPTIONIST_MEDIA__SIP_PORT": str(free_port()),
        **free_rtp_range(),
        "RECEPTIONIST_LOGGING__FORMAT": "json",
    }
    overrides.update(env)
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)
    try:
        settings = load_settings()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    full_env = dict(os.environ)
    full_env.update(overrides)
    return settings, full_env


def stop_process(
    proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, grace: float = 15
) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def start_cli_service(
    command: str, env: dict[str, str], log: Path, url: str, timeout: float
) -> subprocess.Popen[bytes]:
    """`receptionist COMMAND` in its own process group, output to ``log``, until its
    ``/healthz`` answers."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", command],
            cwd=ROOT,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    wait_until(
        lambda: http_json("GET", url + "/healthz", timeout=2)[0] == 200,
        timeout,
        f"receptionist {command}",
        proc,
        log,
    )
    return proc


@dataclass
class RasaStack:
    """A real Rasa action server and Rasa server."""

    settings: Settings
    model: Path
    actions: subprocess.Popen[bytes] | None = None
    server: subprocess.Popen[bytes] | None = None
    logs: Path = field(init=False)

    def __post_init__(self) -> None:
        self.logs = self.settings.data_path / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def _spawn(
        self, cmd: list[str], cwd: Path, log_name: str, env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        (self.settings.data_path / "rasa").mkdir(parents=True, exist_ok=True)
        fh = (self.logs / log_name).open("ab")
        return subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def start_actions(self) -> None:
        # reports bookings to the bot service on this stack's port and data dir (the
        # session's main bot service)
        self.actions = self._spawn(
            actions_command(self.settings),
            self.settings.rasa_project,
            "rasa-actions.log",
            actions_env(self.settings),
        )

    def start_server(self, timeout: float = 240) -> None:
        self.server = self._spawn(
            server_command(self.settings, self.model),
            self.settings.data_path / "rasa",
            "rasa.log",
            rasa_env(),
        )
        token = self.settings.rasa_token()
        url = f"{self.settings.rasa.base_url}/status?token={token}"
        wait_until(
            lambda: http_json("GET", url, timeout=2)[1].get("model_file"),
            timeout,
            "rasa server",
            self.server,
            self.logs / "rasa.log",
        )

    def stop_server(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.server, sig)

    def stop(self) -> None:
        stop_process(self.server)
        stop_process(self.actions)


@dataclass
class BotService:
    """The real bot service (`receptionist serve`) in a subprocess."""

    settings: Settings
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.settings.server.base_url

    @property
    def log(self) -> Path:
        return self.settings.data_path / "logs" / "bot.log"

    def start(self, timeout: float = 60) -> None:
        self.proc = start_cli_service("serve", self.env, self.log, self.url, timeout)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig)

    def api(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return http_json(method, self.url + "/api/v1" + path, body, **kw)

    def new_conversation(self, **body: Any) -> str:
        status, data = self.api("POST", "/conversations", body)
        assert status == 201, data
        return str(data["id"])

    def say(self, cid: str, text: str, **extra: Any) -> dict[str, Any]:
        status, data = self.api("POST", f"/conversations/{cid}/messages", {"text": text, **extra})
        assert status == 200, data
        return dict(data)


@dataclass
class MediaService:
    """The real media server (`receptionist media`) in a subprocess."""

    settings: Settings
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.settings.media.url()

    @property
    def ws(self) -> str:
        return self.url.replace("http", "ws", 1)

    @property
    def log(self) -> Path:
        return self.settings.data_path / "logs" / "media.log"

    def start(self, timeout: float = 120) -> None:
        self.proc = start_cli_service("media", self.env, self.log, self.url, timeout)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig)

    def log_events(self, event: str) -> list[dict[str, Any]]:
        """The media server's JSON log lines with this event name."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                if isinstance(rec, dict) and rec.get("event") == event:
                    out.append(rec)
        return out


class _Service(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


S = TypeVar("S", bound=_Service)


def serving(svc: S) -> Iterator[S]:
    """Start a service, yield it, stop it (``yield from serving(…)`` in a fixture)."""
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


def running_media(data_dir: Path, **env: str) -> Iterator[MediaService]:
    """A media server with its own data dir and ports (``env`` overrides, e.g. its bot)."""
    settings, full_env = instance_settings(data_dir, **env)
    yield from serving(MediaService(settings, full_env))


def media_for(bot: BotService, data_dir: Path, **env: str) -> Iterator[MediaService]:
    """A media server whose calls go to ``bot``; callers get 30 s to speak (loaded CI
    machines), unless ``env`` says otherwise."""
    yield from running_media(
        data_dir,
        **{
            "RECEPTIONIST_MEDIA__BOT_URL": bot.url,
            "RECEPTIONIST_MEDIA__NO_SPEECH_TIMEOUT_S": "30",
            **env,
        },
    )


@dataclass
class Postgres:
    """A throwaway PostgreSQL server on loopback (Debian's binaries)."""

    port: int
    dir: Path
    proc_user: str | None

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://receptionist:secret@127.0.0.1:{self.port}/receptionist"


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise RuntimeError(
            "PostgreSQL server binaries not found; `make test` installs "
            "the Debian package postgresql (scripts/setup.sh --test)"
        )
    return found[-1].parent


def start_postgres() -> Postgres:
    bindir = _pg_bin()
    root = os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="receptionist-pg-"))
    user = "postgres" if root else None
    if root:
        shutil.chown(base, user="postgres")
    pre = ["runuser", "-u", "postgres", "--"] if root else []
    data = base / "data"
    pwfile = base / "pw"
    pwfile.write_text("secret\n")
    if root:
        shutil.chown(pwfile, user="postgres")
    subprocess.run(
        [
            *pre,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "receptionist",
            "--pwfile",
            str(pwfile),
            "-A",
            "scram-sha-256",
            "-E",
            "UTF8",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    port = free_port()
    subprocess.run(
        [
            *pre,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(base / "log"),
            "-w",
            "-o",
            f"-p {port} -k {base} -c listen_addresses=127.0.0.1",
            "start",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    env = dict(os.environ, PGPASSWORD="secret")
    subprocess.run(
        [
            str(bindir / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "receptionist",
            "-d",
            "postgres",
            "-c",
            "CREATE DATABASE receptionist",
        ],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return Postgres(port, base, user)


def stop_postgres(pg: Postgres) -> None:
    pre = ["runuser", "-u", "postgres", "--"] if pg.proc_user else []
    subprocess.run(
        [*pre, str(_pg_bin() / "pg_ctl"), "-D", str(pg.dir / "data"), "-m", "fast", "-w", "stop"],
        check=False,
        stdout=subprocess.DEVNULL,
    )
    shutil.rmtree(pg.dir, ignore_errors=True)
