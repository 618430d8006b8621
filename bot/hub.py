"""In-process publish/subscribe for live pushes (desk offers, new turns, queue updates).

Each subscriber has a bounded queue; a subscriber that falls behind loses the oldest events
(counted in ``dropped``) instead of slowing the publisher. Topics: ``conversation:<id>``,
``agent:<id>``, ``supervisors``. One process only: a deployment with several bot processes
needs a shared bus (PostgreSQL LISTEN/NOTIFY or Redis) behind the same interface.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

Event = dict[str, Any]


class Subscription:
    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.dropped = 0

    def put(self, event: Event) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)

    async def get(self) -> Event:
        return await self.queue.get()


class EventHub:
    def __init__(self, maxsize: int = 256) -> None:
        self._subs: dict[str, set[Subscription]] = {}
        self._maxsize = maxsize

    @contextmanager
    def subscribe(self, *topics: str) -> Iterator[Subscription]:
        sub = Subscription(self._maxsize)
        for t in topics:
            self._subs.setdefault(t, set()).add(sub)
        try:
            yield sub
        finally:
            for t in topics:
                subs = self._subs.get(t)
                if subs is not None:
                    subs.discard(sub)
                    if not subs:
                        del self._subs[t]

    def publish(self, topic: str, event: Event) -> int:
        subs = self._subs.get(topic, ())
        for s in list(subs):
            s.put(event)
        return len(subs)

    def subscribers(self, topic: str) -> int:
        return len(self._subs.get(topic, ()))
