"""Talks to a running Rasa server over HTTP (aiohttp): the REST channel webhook for dialogue,
``/model/parse`` for intent and confidence, ``/status`` for readiness.

Every failure becomes :class:`RasaError` carrying a short code (``rasa_unreachable``,
``rasa_timeout``, ``rasa_http_<status>``, ``rasa_bad_response``). The dialogue calls (webhook,
parse, tracker) report their latency and error code to an optional :class:`NluObserver`
(the service's ``/metrics``).
"""

from __future__ import annotations

import asyncio
import time
import zlib
from typing import Any, Protocol

import aiohttp

from bot.events import BotReply, Button, NluResult


class NluObserver(Protocol):
    def observe_nlu(self, operation: str, seconds: float, error: str | None) -> None:
        """One finished Rasa call: its operation, duration, and error code if it failed."""
        ...


class RasaError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_reply(item: Any) -> BotReply:
    """One element of the REST webhook's answer list → :class:`BotReply`."""
    if not isinstance(item, dict):
        raise RasaError("rasa_bad_response", f"reply is not an object: {item!r:.200}")
    buttons = []
    for b in item.get("buttons") or ():
        if isinstance(b, dict) and "title" in b:
            buttons.append(Button(title=str(b["title"]), payload=str(b.get("payload", b["title"]))))
    custom = item.get("custom")
    if custom is not None and not isinstance(custom, dict):
        custom = {"value": custom}
    text = item.get("text")
    return BotReply(
        text=str(text) if text is not None else None,
        buttons=tuple(buttons),
        image=item.get("image"),
        custom=custom,
    )


class RasaClient:
    """A thin async client for one Rasa server."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        token: str | None,
        timeout_s: float,
        observer: NluObserver | None = None,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._observer = observer

    @property
    def base_url(self) -> str:
        return self._base

    def _params(self) -> dict[str, str]:
        return {"token": self._token} if self._token else {}

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        auth: bool = True,
        timeout: aiohttp.ClientTimeout | None = None,  # noqa: ASYNC109
        operation: str | None = None,
    ) -> Any:
        """The JSON answer; with ``operation``, the call is reported to the observer."""
        if operation is None or self._observer is None:
            return await self._send(method, path, json=json, auth=auth, timeout=timeout)
        started = time.perf_counter()
        try:
            data = await self._send(method, path, json=json, auth=auth, timeout=timeout)
        except RasaError as exc:
            self._observer.observe_nlu(operation, time.perf_counter() - started, exc.code)
            raise
        self._observer.observe_nlu(operation, time.perf_counter() - started, None)
        return data

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        auth: bool,
        timeout: aiohttp.ClientTimeout | None,  # noqa: ASYNC109
    ) -> Any:
        url = self._base + path
        try:
            async with self._session.request(
                method,
                url,
                json=json,
                params=self._params() if auth else None,
                timeout=timeout or self._timeout,
            ) as resp:
                if resp.status >= 400:
                    body = (await resp.text())[:300]
                    raise RasaError(f"rasa_http_{resp.status}", f"{method} {path}: {body}")
                try:
                    return await resp.json(content_type=None)
                except ValueError as exc:
                    raise RasaError("rasa_bad_response", f"{method} {path}: not JSON") from exc
        except TimeoutError as exc:
            raise RasaError("rasa_timeout", f"{method} {path} timed out") from exc
        except aiohttp.ClientError as exc:
            raise RasaError("rasa_unreachable", f"{method} {path}: {exc}") from exc

    async def send_message(
        self, sender_id: str, text: str, metadata: dict[str, Any] | None = None
    ) -> list[BotReply]:
        """Post a user message to the REST channel; return the bot's replies in order."""
        body: dict[str, Any] = {"sender": sender_id, "message": text}
        if metadata:
            body["metadata"] = metadata
        data = await self._request(
            "POST", "/webhooks/rest/webhook", json=body, auth=False, operation="webhook"
        )
        if not isinstance(data, list):
            raise RasaError("rasa_bad_response", f"webhook answered {type(data).__name__}")
        return [parse_reply(item) for item in data]

    async def parse(self, text: str) -> NluResult:
        data = await self._request("POST", "/model/parse", json={"text": text}, operation="parse")
        if not isinstance(data, dict):
            raise RasaError("rasa_bad_response", "/model/parse did not answer an object")
        intent = data.get("intent") or {}
        return NluResult(
            intent=intent.get("name"),
            confidence=float(intent["confidence"]) if "confidence" in intent else None,
            entities=tuple(e for e in data.get("entities") or () if isinstance(e, dict)),
        )

    async def latest_nlu(self, sender_id: str) -> NluResult:
        """What Rasa's NLU made of the sender's latest message, read from its tracker (the
        parse Rasa used for the dialogue, at the cost of a store read, not a second parse)."""
        data = await self._request(
            "GET", f"/conversations/{sender_id}/tracker?include_events=NONE", operation="tracker"
        )
        latest = data.get("latest_message") if isinstance(data, dict) else None
        if not isinstance(latest, dict):
            raise RasaError("rasa_bad_response", "tracker has no latest_message")
        intent = latest.get("intent") or {}
        return NluResult(
            intent=intent.get("name"),
            confidence=float(intent["confidence"]) if "confidence" in intent else None,
            entities=tuple(e for e in latest.get("entities") or () if isinstance(e, dict)),
        )

    async def status(self) -> dict[str, Any]:
        """Rasa's ``/status``: which model is loaded. Raises :class:`RasaError` when down."""
        data = await self._request("GET", "/status", timeout=aiohttp.ClientTimeout(total=3))
        if not isinstance(data, dict):
            raise RasaError("rasa_bad_response", "/status did not answer an object")
        return data

    async def tracker(self, sender_id: str) -> dict[str, Any]:
        data = await self._request("GET", f"/conversations/{sender_id}/tracker")
        if not isinstance(data, dict):
            raise RasaError("rasa_bad_response", "tracker did not answer an object")
        return data

    async def wait_ready(self, timeout_s: float, interval_s: float = 0.5) -> dict[str, Any]:
        """Poll ``/status`` until a model is loaded; raise :class:`RasaError` on timeout."""
        deadline = time.monotonic() + timeout_s
        last: RasaError | None = None
        while time.monotonic() < deadline:
            try:
                st = await self.status()
                if st.get("model_file"):
                    return st
                last = RasaError("rasa_no_model", "Rasa is up but has no model loaded")
            except RasaError as exc:
                last = exc
            await asyncio.sleep(interval_s)
        raise RasaError(
            "rasa_not_ready",
            f"Rasa at {self._base} not ready after {timeout_s:.0f}s: "
            f"{last.message if last else ''}",
        )


class RasaPool:
    """Several Rasa servers behind one client. Each conversation always goes to the same
    server (stable hash of its id), so every server keeps its own tracker store and needs no
    shared lock store; one Rasa process runs per core."""

    def __init__(self, clients: list[RasaClient]) -> None:
        if not clients:
            raise ValueError("a Rasa pool needs at least one server")
        self.clients = clients

    def for_sender(self, sender_id: str) -> RasaClient:
        return self.clients[zlib.crc32(sender_id.encode()) % len(self.clients)]

    @property
    def base_url(self) -> str:
        return ", ".join(c.base_url for c in self.clients)

    async def send_message(
        self, sender_id: str, text: str, metadata: dict[str, Any] | None = None
    ) -> list[BotReply]:
        return await self.for_sender(sender_id).send_message(sender_id, text, metadata)

    async def latest_nlu(self, sender_id: str) -> NluResult:
        return await self.for_sender(sender_id).latest_nlu(sender_id)

    async def parse(self, text: str) -> NluResult:
        return await self.clients[0].parse(text)

    async def tracker(self, sender_id: str) -> dict[str, Any]:
        return await self.for_sender(sender_id).tracker(sender_id)

    async def status(self) -> dict[str, Any]:
        """The first server's status once every server has a model; else the first error."""
        statuses = await asyncio.gather(*(c.status() for c in self.clients))
        for c, st in zip(self.clients, statuses, strict=True):
            if not st.get("model_file"):
                raise RasaError("rasa_no_model", f"{c.base_url} has no model loaded")
        return statuses[0]
