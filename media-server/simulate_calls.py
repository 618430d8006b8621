"""Simulated phone calls for ``receptionist simulate``: callers with Piper-synthesized
questions over the Twilio media-stream transport, some pressing 0 for a person and waiting
on hold for an agent (whose messages the media server speaks to them)."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from media_server.bench import synthesize_questions
from media_server.caller import TwilioCaller


@dataclass
class CallTally:
    calls: int = 0
    answered_by_bot: int = 0
    pressed_zero: int = 0
    heard_agent: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def as_data(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "answered_by_bot": self.answered_by_bot,
            "pressed_zero": self.pressed_zero,
            "heard_agent": self.heard_agent,
            "errors": dict(self.errors),
        }


async def one_call(
    ws_url: str,
    speech: list[np.ndarray],
    tally: CallTally,
    *,
    delay_s: float,
    wants_human: bool,
    patience_s: float,
    rnd: random.Random,
) -> None:
    await asyncio.sleep(delay_s)
    tally.calls += 1
    try:
        async with TwilioCaller(ws_url, params={"from": f"+4479{rnd.randrange(10**8):08d}"}) as c:
            await c.wait_speech(0.0, timeout=60)  # the greeting
            await c.wait_quiet(0.5, timeout=60)
            _, end = await c.say(speech[rnd.randrange(len(speech))])
            await c.wait_speech(end, timeout=30)
            await c.wait_quiet(0.6, timeout=90)
            tally.answered_by_bot += 1
            if wants_human:
                await c.press("0")
                tally.pressed_zero += 1
                await c.wait_quiet(0.6, timeout=60)  # "connecting you…"
                # the agent's greeting is spoken to the caller: speech after the hand-off note
                try:
                    await c.wait_speech(time.monotonic() + 0.1, timeout=patience_s)
                    tally.heard_agent += 1
                    await c.wait_quiet(0.6, timeout=60)
                except TimeoutError:
                    pass  # hanging up while queued: an abandoned call
    except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
        tally.errors[type(exc).__name__] += 1


def start_calls(
    media_url: str,
    voice: str,
    calls: int,
    *,
    duration_s: float,
    human_share: float,
    patience_s: float,
    seed: int | None,
) -> tuple[CallTally, list[asyncio.Task[None]]]:
    """Starts ``calls`` calls arriving over ``duration_s`` (Poisson); returns their tally
    and tasks."""
    rnd = random.Random(seed)
    speech = synthesize_questions(voice)
    ws_url = media_url.rstrip("/").replace("http", "ws", 1) + "/media/twilio"
    tally = CallTally()
    tasks = []
    at = 0.0
    rate = calls / max(duration_s, 1.0)
    for _ in range(calls):
        tasks.append(
            asyncio.create_task(
                one_call(
                    ws_url,
                    speech,
                    tally,
                    delay_s=at,
                    wants_human=rnd.random() < human_share,
                    patience_s=patience_s,
                    rnd=rnd,
                )
            )
        )
        at += rnd.expovariate(rate)
    return tally, tasks
