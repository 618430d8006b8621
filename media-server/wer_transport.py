"""Decoding through the network transport, for word-error-rate comparisons: a recording is
streamed in real time to a running media server as a call would be (8 kHz audio through a
G.711 μ-law round trip, 20 ms frames) and the final transcripts the server reports are
joined. ``scripts/asr_wer.py --mode transport`` compares this with direct decoding."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import numpy as np

from media_server.audio.codecs import ulaw_decode, ulaw_encode


async def decode_via_transport(
    url: str, pcm8k: np.ndarray, *, language: str = "en", tail_s: float = 1.5
) -> str:
    """The text the media server at ``url`` (``ws://…/media/browser``) recognizes in
    ``pcm8k`` (int16, 8 kHz), after the telephone codec."""
    telephone = ulaw_decode(ulaw_encode(np.asarray(pcm8k, dtype=np.int16)))
    finals: list[str] = []
    events: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
        await ws.send_json(
            {"type": "start", "version": 1, "sample_rate": 8000, "language": language}
        )
        last_audio = time.monotonic()

        async def read() -> None:
            nonlocal last_audio
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    last_audio = time.monotonic()
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    event = json.loads(msg.data)
                    events.append(event)
                    if event.get("type") == "transcript" and event.get("final"):
                        # what the recognizer heard, before any phrase biasing
                        finals.append(str(event.get("heard") or event["text"]))

        reader = asyncio.create_task(read())
        silence = np.zeros(160, dtype=np.int16)

        async def send(pcm: np.ndarray) -> None:
            start = time.monotonic()
            for n, i in enumerate(range(0, len(pcm), 160)):
                await ws.send_bytes(pcm[i : i + 160].astype("<i2").tobytes())
                delay = start + (n + 1) * 0.02 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)

        # let the greeting play out (a caller would listen), then speak
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            await send(np.tile(silence, 10))
            if events and time.monotonic() - last_audio > 0.5:
                break
        count = len(finals)
        await send(np.concatenate([telephone, np.tile(silence, int(tail_s * 50))]))
        # the last utterance's final arrives after the endpointing silence
        deadline = time.monotonic() + 5
        while len(finals) == count and time.monotonic() < deadline:
            await send(np.tile(silence, 5))
        await ws.send_json({"type": "stop"})
        await asyncio.wait_for(reader, 10)
    return " ".join(finals[count:]).strip()
