"""``receptionist up``: start the Rasa action server, the Rasa server and the bot service,
wait until they are ready, print every endpoint, and stop them all cleanly on Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp

from bot.config import Settings
from bot.nlu_model import ensure_model
from bot.rasa_client import RasaClient, RasaError, RasaPool
from bot.rasa_runtime import actions_command, actions_env, rasa_env, server_command


class StartupError(Exception):
    pass


@dataclass
class ManagedProcess:
    """One child process in its own process group, its output to a log file or ours."""

    name: str
    cmd: list[str]
    cwd: Path
    env: dict[str, str]
    log_path: Path | None = None
    proc: asyncio.subprocess.Process | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    async def start(self) -> None:
        out: IO[bytes] | None = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = out = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            *self.cmd,
            cwd=self.cwd,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT if out else None,
            start_new_session=True,
        )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def stop(self, grace_s: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), grace_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, chars: int = 3000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def check_ports(settings: Settings) -> None:
    wanted = {"server.port": (settings.server.host, settings.server.port)}
    if settings.media.manage:
        wanted["media.port"] = (settings.media.host, settings.media.port)
        if settings.media.audiosocket_port:
            wanted["media.audiosocket_port"] = (
                settings.media.host,
                settings.media.audiosocket_port,
            )
    if settings.rasa.manage:
        for i in range(settings.rasa.servers):
            key = "rasa.port" if i == 0 else f"rasa.port+{i} (rasa.servers)"
            wanted[key] = ("127.0.0.1", settings.rasa.port + i)
        wanted["rasa.actions_port"] = ("127.0.0.1", settings.rasa.actions_port)
    busy = [f"{key}={port}" for key, (host, port) in wanted.items() if not port_free(port, host)]
    if busy:
        raise StartupError(
            f"port(s) already in use: {', '.join(busy)}. Stop the other process (is the "
            "receptionist already running?) or choose other ports in receptionist.toml or "
            "with RECEPTIONIST_SERVER__PORT / RECEPTIONIST_RASA__PORT / "
            "RECEPTIONIST_RASA__ACTIONS_PORT / RECEPTIONIST_MEDIA__PORT."
        )


def endpoints_banner(settings: Settings) -> str:
    base = settings.server.base_url
    lines = [
        "",
        "receptionist is up. Endpoints:",
        f"  webchat demo page     {base}/",
        f"  webchat WebSocket     {base.replace('http', 'ws', 1)}/webchat/ws",
        f"  agent desk            {base}/desk",
        f"  supervisor dashboard  {base}/desk/dashboard",
        f"  review inbox          {base}/desk/review   (conversation designers)",
        f"  HTTP API              {base}/api/v1/conversations",
        f"  OpenAPI document      {base}/api/v1/openapi.json",
        f"  health / readiness    {base}/healthz   {base}/readyz",
        f"  metrics (Prometheus)  {base}/metrics",
        f"  Rasa servers (local)  {', '.join(settings.rasa.urls)}",
    ]
    if settings.media.manage:
        media = settings.media.url()
        ws = media.replace("http", "ws", 1)
        lines += [
            f"  voice: browser mic    {ws}/media/browser   (the demo page's microphone button)",
            f"  voice: media streams  {ws}/media/twilio   (Twilio-compatible, μ-law 8 kHz)",
            f"  media server health   {media}/healthz   {media}/readyz   {media}/metrics",
        ]
        if settings.media.audiosocket_port:
            host = "127.0.0.1" if settings.media.host in ("0.0.0.0", "::") else settings.media.host
            lines.append(
                f"  voice: AudioSocket    tcp://{host}:{settings.media.audiosocket_port}"
                "   (Asterisk's AudioSocket() dialplan application)"
            )
        if settings.media.sip_port:
            host = "127.0.0.1" if settings.media.host in ("0.0.0.0", "::") else settings.media.host
            host = settings.media.sip_public_host or host
            lines.append(
                f"  voice: SIP            sip:{host}:{settings.media.sip_port}"
                "   (UDP and TCP; point a PBX or SIP trunk here)"
            )
    lines += [
        "",
        "Try it:",
        "  .venv/bin/receptionist chat",
        f"  curl -s -X POST {base}/api/v1/conversations "
        "-H 'Content-Type: application/json' -d '{}'",
        "",
        "Press Ctrl-C to stop everything.",
        "",
    ]
    return "\n".join(lines)


async def _wait_http_ok(url: str, timeout_s: float, procs: list[ManagedProcess]) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            _raise_if_exited(procs)
            try:
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
    raise StartupError(f"{url} did not answer within {timeout_s:.0f}s")


def _raise_if_exited(procs: list[ManagedProcess]) -> None:
    for p in procs:
        if p.proc is not None and p.proc.returncode is not None:
            where = f"\n--- last lines of {p.log_path} ---\n{p.log_tail()}" if p.log_path else ""
            raise StartupError(
                f"{p.name} exited with code {p.proc.returncode} during start-up{where}"
            )


# Asked of every Rasa server once it has loaded its model: intent, dialogue policies and a
# custom action (the opening hours), so none of them is first used by a caller.
WARM_UP_TEXT = "what are your opening hours"


async def _warm_rasa(settings: Settings, http: aiohttp.ClientSession) -> None:
    """One message through each Rasa server and the action server. Rasa builds its
    TensorFlow graphs on the first message it handles (~0.5 s on 2 cores), which the first
    caller would otherwise wait for. A failure here is only reported: the servers are up."""
    for url in settings.rasa.urls:
        started = time.monotonic()
        try:
            await RasaClient(http, url, settings.rasa_token(), 60).send_message(
                f"warm-up-{secrets.token_hex(4)}", WARM_UP_TEXT
            )
        except RasaError as exc:
            print(f"[up] warming up Rasa at {url} failed: {exc.message}", file=sys.stderr)
            continue
        took = time.monotonic() - started
        print(f"[up] Rasa at {url} warmed up in {took:.1f}s", file=sys.stderr, flush=True)


async def _wait_rasa(settings: Settings, procs: list[ManagedProcess]) -> float:
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        client = RasaPool(
            [RasaClient(http, url, settings.rasa_token(), 3) for url in settings.rasa.urls]
        )
        print(
            "[up] waiting for Rasa to load its model",
            end="",
            file=sys.stderr,
            flush=True,
        )
        while time.monotonic() - started < settings.rasa.startup_timeout_s:
            _raise_if_exited(procs)
            try:
                st = await client.status()
                if st.get("model_file"):
                    elapsed = time.monotonic() - started
                    print(f" ready in {elapsed:.1f}s", file=sys.stderr, flush=True)
                    await _warm_rasa(settings, http)
                    return elapsed
            except RasaError:
                pass
            print(".", end="", file=sys.stderr, flush=True)
            await asyncio.sleep(1)
    raise StartupError(
        f"Rasa did not become ready within {settings.rasa.startup_timeout_s:.0f}s; "
        f"see {settings.data_path / 'logs' / 'rasa.log'}"
    )


async def run_up(settings: Settings, config_file: Path | None) -> int:
    check_ports(settings)
    procs: list[ManagedProcess] = []
    logs = settings.data_path / "logs"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if settings.rasa.manage:
            model = await asyncio.to_thread(ensure_model, settings)
            actions = ManagedProcess(
                "rasa action server",
                actions_command(settings),
                settings.rasa_project,
                actions_env(settings),
                logs / "rasa-actions.log",
            )
            # one TensorFlow thread per server when several share the cores
            pool_env = (
                {
                    k: os.environ.get(k, "1")
                    for k in ("TF_INTRA_OP_PARALLELISM_THREADS", "TF_INTER_OP_PARALLELISM_THREADS")
                }
                if settings.rasa.servers > 1
                else {}
            )
            servers = [
                ManagedProcess(
                    f"rasa server {i}" if settings.rasa.servers > 1 else "rasa server",
                    server_command(settings, model, i),
                    settings.data_path / "rasa",
                    rasa_env(pool_env),
                    logs / ("rasa.log" if i == 0 else f"rasa-{i}.log"),
                )
                for i in range(settings.rasa.servers)
            ]
            for p in (actions, *servers):
                await p.start()
                procs.append(p)
            print(f"[up] Rasa logs: {logs}/rasa.log, {logs}/rasa-actions.log", file=sys.stderr)
            await _wait_rasa(settings, procs)
        bot_cmd = [sys.executable, "-m", "bot.cli"]
        if config_file is not None:
            bot_cmd += ["--config", str(config_file)]
        bot = ManagedProcess("bot service", [*bot_cmd, "serve"], settings.home, dict(os.environ))
        await bot.start()
        procs.append(bot)
        await _wait_http_ok(settings.server.base_url + "/healthz", 60, procs)
        if settings.media.manage:
            media = ManagedProcess(
                "media server", [*bot_cmd, "media"], settings.home, dict(os.environ)
            )
            await media.start()
            procs.append(media)
            await _wait_http_ok(settings.media.url() + "/healthz", 120, procs)
        print(endpoints_banner(settings), flush=True)

        exited = asyncio.ensure_future(
            asyncio.wait(
                [asyncio.ensure_future(p.proc.wait()) for p in procs if p.proc],
                return_when=asyncio.FIRST_COMPLETED,
            )
        )
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([exited, stopping], return_when=asyncio.FIRST_COMPLETED)
        if not stop.is_set():
            dead = [p for p in procs if not p.running]
            for p in dead:
                print(
                    f"[up] {p.name} exited unexpectedly "
                    f"(code {p.proc.returncode if p.proc else '?'})",
                    file=sys.stderr,
                )
                if p.log_path:
                    print(p.log_tail(1500), file=sys.stderr)
            return 1
        exited.cancel()
        return 0
    finally:
        print("[up] stopping…", file=sys.stderr, flush=True)
        for p in reversed(procs):
            await p.stop()
        print("[up] stopped.", file=sys.stderr, flush=True)
