"""The conversation store on SQLite and on a real PostgreSQL server: same code, same results."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from bot.store import (
    ConversationNotFound,
    DatabaseConfigError,
    SqlConversationStore,
    create_engine,
    migrate,
)
from bot.store.engine import current_revision, head_revision
from bot.store.records import Customer, NewEvent, NewTurn
from tests.procs import Postgres


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SqlConversationStore]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    else:
        pg: Postgres = request.getfixturevalue("postgres")
        url = pg.url
    engine = create_engine(url)
    await migrate(engine)
    await migrate(engine)  # idempotent
    assert await current_revision(engine) == head_revision() is not None
    try:
        yield SqlConversationStore(engine)
    finally:
        await engine.dispose()


async def test_create_and_read_back(store: SqlConversationStore) -> None:
    c = await store.create(
        "webchat",
        "active",
        Customer("Ana", "+441234", "ana@example.org"),
        {"page": "/pricing", "n": [1, 2]},
    )
    got = await store.get(c.id)
    assert got is not None
    assert got.customer == Customer("Ana", "+441234", "ana@example.org")
    assert got.metadata == {"page": "/pricing", "n": [1, 2]}
    assert got.channel == "webchat"
    assert got.created_at.tzinfo is not None and got.created_at.utcoffset() == UTC.utcoffset(None)
    assert got.turns == ()
    assert await store.get("0" * 32) is None


async def test_append_orders_turns_and_events(store: SqlConversationStore) -> None:
    c = await store.create("api", "active", Customer(), None)
    await store.append(
        c.id,
        [
            NewTurn("user", "hi", intent="greet", intent_confidence=0.97, client_message_id="m1"),
            NewTurn("bot", "Hello!", payload={"buttons": [{"title": "A", "payload": "/a"}]}),
        ],
    )
    await store.append(
        c.id,
        [NewTurn("user", "human please")],
        [NewEvent("handoff_requested", {"reason": "user_request"})],
        status="handoff_requested",
    )
    got = await store.get(c.id)
    assert got is not None
    assert [(t.seq, t.role, t.text) for t in got.turns] == [
        (1, "user", "hi"),
        (2, "bot", "Hello!"),
        (3, "user", "human please"),
    ]
    assert got.turns[0].intent == "greet" and got.turns[0].intent_confidence == pytest.approx(0.97)
    assert got.turns[1].payload == {"buttons": [{"title": "A", "payload": "/a"}]}
    assert got.turn_count == 3
    assert got.status == "handoff_requested"
    assert [(e.type, e.data) for e in got.events] == [
        ("handoff_requested", {"reason": "user_request"})
    ]
    exchange = await store.exchange_for(c.id, "m1")
    assert [t.seq for t in exchange] == [1, 2]
    assert await store.exchange_for(c.id, "unknown") == []


async def test_append_is_atomic(store: SqlConversationStore) -> None:
    c = await store.create("api", "active", Customer(), None)
    await store.append(c.id, [NewTurn("user", "first", client_message_id="dup")])
    with pytest.raises(IntegrityError):
        await store.append(
            c.id,
            [NewTurn("user", "again", client_message_id="dup"), NewTurn("bot", "reply")],
            [NewEvent("should_not_exist")],
            status="closed",
        )
    got = await store.get(c.id)
    assert got is not None
    assert [t.text for t in got.turns] == ["first"]
    assert got.events == () and got.status == "active" and got.turn_count == 1


async def test_concurrent_appends_get_distinct_sequence_numbers(
    store: SqlConversationStore,
) -> None:
    """A visitor's message and an agent's reply written at the same moment (found by
    ``receptionist simulate``: a stale turn count gave both the same seq and one a 500)."""
    c = await store.create("webchat", "active", Customer(), None)
    await asyncio.gather(
        *(
            store.append(
                c.id, [NewTurn("user" if i % 2 else "agent", f"t{i}"), NewTurn("bot", "r")]
            )
            for i in range(20)
        )
    )
    got = await store.get(c.id)
    assert got is not None
    assert [t.seq for t in got.turns] == list(range(1, 41)) and got.turn_count == 40
    assert sorted(t.text for t in got.turns if t.role != "bot") == sorted(
        f"t{i}" for i in range(20)
    )


async def test_append_to_unknown_conversation(store: SqlConversationStore) -> None:
    with pytest.raises(ConversationNotFound):
        await store.append("f" * 32, [NewTurn("user", "x")])


async def test_database_is_writable(store: SqlConversationStore) -> None:
    await store.check_writable()


@pytest.mark.parametrize(
    "url,fragment",
    [
        ("sqlite+aiosqlite:///:memory:", "not memory"),
        ("mysql://u:p@localhost/db", "supported"),
        ("not a url", "not a valid"),
    ],
)
def test_unusable_database_urls_are_refused(url: str, fragment: str) -> None:
    with pytest.raises(DatabaseConfigError, match=fragment):
        create_engine(url)
