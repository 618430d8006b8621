"""``receptionist bench api``: message round trip through the running bot service and Rasa."""

from __future__ import annotations

import statistics
import time

import aiohttp

QUESTIONS = (
    "what are your opening hours",
    "where are you located",
    "hello",
    "thanks",
    "are you a bot",
)


def _pct(sorted_ms: list[float], q: float) -> float:
    idx = min(len(sorted_ms) - 1, max(0, round(q * (len(sorted_ms) - 1))))
    return sorted_ms[idx]


async def bench_api(base_url: str, messages: int) -> dict[str, float]:
    api = base_url.rstrip("/") + "/api/v1"
    times: list[float] = []
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{api}/conversations", json={"metadata": {"source": "bench"}}) as r:
            r.raise_for_status()
            cid = (await r.json())["id"]
        # one warm-up message (connection set-up, first inference)
        async with http.post(f"{api}/conversations/{cid}/messages", json={"text": "hi"}) as r:
            r.raise_for_status()
        for i in range(messages):
            text = QUESTIONS[i % len(QUESTIONS)]
            t0 = time.perf_counter()
            async with http.post(f"{api}/conversations/{cid}/messages", json={"text": text}) as r:
                r.raise_for_status()
                body = await r.json()
            times.append((time.perf_counter() - t0) * 1000)
            if not body["replies"]:
                raise RuntimeError(f"no reply to {text!r}")
    s = sorted(times)
    return {
        "messages": float(messages),
        "median_ms": statistics.median(s),
        "p95_ms": _pct(s, 0.95),
        "min_ms": s[0],
        "max_ms": s[-1],
    }


async def bench_handoff(agents: int, tickets: int) -> dict[str, float]:
    """Handoff creation → offer pushed to an agent's desk WebSocket, through a real bot
    service (in-process, throwaway SQLite database). ``agents`` are logged in and available
    with room for every ticket, so the figure is the system's latency, not queueing time."""
    import asyncio
    import contextlib
    import socket
    import tempfile
    from pathlib import Path

    from aiohttp import web
    from pydantic import SecretStr

    from bot.app import create_app
    from bot.config import HandoffSettings, RasaSettings, ServerSettings, Settings
    from bot.desk.users import UserStore
    from bot.handoff.records import UserRole
    from bot.store import create_engine, migrate

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="receptionist-bench-") as tmp:
        # built from scratch, never from the environment: the bench must not touch a real
        # installation's database or ports
        settings = Settings.model_construct(
            home=Path(tmp),
            data_dir=Path(tmp),
            server=ServerSettings(port=port),
            rasa=RasaSettings(url="http://127.0.0.1:9", token=SecretStr("unused")),
            handoff=HandoffSettings(router_interval_s=1.0, offer_timeout_s=600),
        )
        engine = create_engine(settings.database_url)
        await migrate(engine)
        users = UserStore(engine)
        per_agent = max(1, -(-tickets // agents))
        for i in range(agents):
            await users.add(
                f"bench{i}",
                "bench-password",
                role=UserRole.AGENT,
                display_name=f"Bench {i}",
                skills={"general": 1},
                max_chats=min(20, per_agent),
            )
        await engine.dispose()
        runner = web.AppRunner(create_app(settings))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        base = settings.server.base_url
        offered_at: dict[str, float] = {}
        all_offered = asyncio.Event()
        sessions = []
        try:
            sockets = []
            for i in range(agents):
                http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
                sessions.append(http)
                async with http.post(
                    base + "/desk/api/login",
                    json={"username": f"bench{i}", "password": "bench-password"},
                ) as r:
                    csrf = (await r.json())["csrf_token"]
                async with http.post(
                    base + "/desk/api/presence",
                    json={"presence": "available"},
                    headers={"X-CSRF-Token": csrf},
                ) as r:
                    r.raise_for_status()
                ws = await http.ws_connect(base + "/desk/ws")
                await ws.receive_json()
                sockets.append(ws)

            async def listen(ws: aiohttp.ClientWebSocketResponse) -> None:
                async for msg in ws:
                    ev = msg.json()
                    if ev["type"] == "offer":
                        offered_at[ev["ticket"]["conversation_id"]] = time.perf_counter()
                        if len(offered_at) >= tickets:
                            all_offered.set()

            listeners = [asyncio.create_task(listen(ws)) for ws in sockets]
            created_at: dict[str, float] = {}
            visitor = aiohttp.ClientSession()
            sessions.append(visitor)
            for _ in range(tickets):
                async with visitor.post(base + "/api/v1/conversations", json={}) as r:
                    cid = (await r.json())["id"]
                created_at[cid] = time.perf_counter()
                async with visitor.post(f"{base}/api/v1/conversations/{cid}/handoff", json={}) as r:
                    r.raise_for_status()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_offered.wait(), 30)
            for task in listeners:
                task.cancel()
        finally:
            for http in sessions:
                await http.close()
            await runner.cleanup()
    if len(offered_at) < tickets:
        raise RuntimeError(f"only {len(offered_at)} of {tickets} tickets were offered in 30 s")
    lat = sorted((offered_at[c] - created_at[c]) * 1000 for c in created_at)
    return {
        "tickets": float(tickets),
        "agents": float(agents),
        "median_ms": statistics.median(lat),
        "p95_ms": _pct(lat, 0.95),
        "max_ms": lat[-1],
    }


async def bench_webchat(
    base_url: str, visitors: int, messages: int = 3, think_s: float = 1.0
) -> dict[str, float]:
    """``visitors`` concurrent webchat visitors over the WebSocket channel of a running
    service, each asking ``messages`` questions, pausing ``think_s`` on average (uniformly
    0.5-1.5x) between them; arrivals are spread over the same time. Reply latency is from
    sending a message to its ack, which the channel sends after the bot's replies."""
    ramp_s = max(1.0, think_s)
    import asyncio
    import json
    import random

    ws_url = base_url.rstrip("/").replace("http", "ws", 1) + "/webchat/ws"
    latencies: list[float] = []
    errors: dict[str, int] = {}

    async def visitor(http: aiohttp.ClientSession, n: int) -> None:
        await asyncio.sleep(random.uniform(0, ramp_s))
        try:
            async with http.ws_connect(ws_url) as ws:
                await ws.send_json({"type": "hello", "v": 1})
                while (await ws.receive_json(timeout=30))["type"] != "welcome":
                    pass
                for i in range(messages):
                    mid = f"v{n}-{i}"
                    t0 = time.perf_counter()
                    await ws.send_json(
                        {"type": "message", "id": mid, "text": QUESTIONS[(n + i) % len(QUESTIONS)]}
                    )
                    while True:
                        frame = json.loads((await ws.receive(timeout=60)).data)
                        if frame["type"] == "ack" and frame["id"] == mid:
                            latencies.append((time.perf_counter() - t0) * 1000)
                            break
                        if frame["type"] == "error":
                            errors[frame["code"]] = errors.get(frame["code"], 0) + 1
                            break
                    await asyncio.sleep(random.uniform(0.5 * think_s, 1.5 * think_s))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(*(visitor(http, n) for n in range(visitors)))
    wall = time.perf_counter() - started
    s = sorted(latencies) or [float("nan")]
    out = {
        "visitors": float(visitors),
        "replies": float(len(latencies)),
        "messages_per_s": len(latencies) / wall,
        "p50_ms": _pct(s, 0.50),
        "p95_ms": _pct(s, 0.95),
        "p99_ms": _pct(s, 0.99),
        "wall_s": wall,
    }
    out.update({f"error_{k}": float(v) for k, v in errors.items()})
    return out
