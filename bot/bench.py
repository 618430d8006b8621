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
