"""``receptionist chat``: talk to the bot in the terminal, through the running bot service's
public API (the same conversation service every channel uses)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import aiohttp

PROMPT = "you> "


def render_reply(reply: dict[str, Any]) -> list[str]:
    lines = []
    if reply.get("text"):
        lines.append(f"bot> {reply['text']}")
    for i, b in enumerate(reply.get("buttons") or (), start=1):
        lines.append(f"     [{i}] {b['title']}")
    if reply.get("image"):
        lines.append(f"     (image: {reply['image']})")
    custom = reply.get("custom") or {}
    if "handoff" in custom:
        lines.append("     (handing over to a person)")
    return lines


async def _readline() -> str | None:
    line = await asyncio.to_thread(sys.stdin.readline)
    return None if line == "" else line.rstrip("\n")


async def run_chat(base_url: str) -> int:
    api = base_url.rstrip("/") + "/api/v1"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        try:
            async with http.post(
                f"{api}/conversations", json={"channel": "api", "metadata": {"source": "terminal"}}
            ) as r:
                conv = await r.json()
                if r.status != 201:
                    print(f"error: {conv.get('error', conv)}", file=sys.stderr)
                    return 1
        except aiohttp.ClientError as exc:
            print(
                f"error: the bot service is not reachable at {base_url} ({exc}).\n"
                "Start it with `make run` (or `receptionist up`) in another terminal.",
                file=sys.stderr,
            )
            return 1
        cid = conv["id"]
        print(f"conversation {cid}. Type a message; a number picks a button; /quit to leave.")
        buttons: list[dict[str, str]] = []
        while True:
            print(PROMPT, end="", flush=True)
            line = await _readline()
            if line is None or line.strip() in ("/quit", "/exit"):
                print()
                return 0
            text = line.strip()
            if not text:
                continue
            if text.isdigit() and 1 <= int(text) <= len(buttons):
                text = buttons[int(text) - 1]["payload"]
            try:
                async with http.post(
                    f"{api}/conversations/{cid}/messages", json={"text": text}
                ) as r:
                    body = await r.json()
            except aiohttp.ClientError as exc:
                print(f"error: lost the bot service: {exc}", file=sys.stderr)
                continue
            if r.status != 200:
                print(f"error: {body.get('error', {}).get('message', body)}", file=sys.stderr)
                continue
            buttons = []
            for reply in body["replies"]:
                for ln in render_reply(reply):
                    print(ln)
                buttons += reply.get("buttons") or []
            sys.stdout.flush()
