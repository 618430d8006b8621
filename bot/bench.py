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
