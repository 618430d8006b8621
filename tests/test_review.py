"""The designer's review inbox: collection from the store, grouping, round-trip edits of the
training data, the API's roles and CSRF, and one retrain end to end with a real Rasa server
whose model is swapped while a conversation is in the middle of a form."""

from __future__ import annotations

import asyncio
import difflib
import http.cookiejar
import json
import random
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import async_sessionmaker

from bot.app import create_app
from bot.config import Settings
from bot.desk.users import UserStore
from bot.handoff.records import UserRole
from bot.nlu.data import read_examples
from bot.review import api as review_api
from bot.review.collect import Candidate, Reason, collect
from bot.review.grouping import group
from bot.review.nlu_edit import NluEditError, append_examples
from bot.store import create_engine, migrate
from bot.store.schema import (
    ConversationRow,
    ReviewDecisionRow,
    TicketRow,
    TurnRow,
    UserRow,
)
from tests.procs import ROOT, BotService, RasaStack, http_json, instance_settings, wait_until

PASSWORD = "a-long-test-password"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


# -- collection ----------------------------------------------------------------------------
async def test_collects_fallback_low_confidence_and_turns_before_a_handoff(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await migrate(engine)
    seq = iter(range(1, 1000))

    def turn(cid: str, role: str, text: str, intent: str | None, conf: float | None, m: int) -> Any:
        return TurnRow(
            conversation_id=cid,
            seq=next(seq),
            role=role,
            text=text,
            intent=intent,
            intent_confidence=conf,
            created_at=T0 + timedelta(minutes=m),
        )

    sessions = async_sessionmaker(engine)
    async with sessions.begin() as s:
        for cid, channel in (("a", "webchat"), ("b", "voice"), ("c", "webchat")):
            s.add(
                ConversationRow(
                    id=cid,
                    channel=channel,
                    status="active",
                    turn_count=0,
                    created_at=T0,
                    updated_at=T0,
                )
            )
        await s.flush()
        s.add_all(
            [
                turn("a", "user", "hello", "greet", 0.99, 0),
                turn("a", "bot", "Hi!", None, None, 0),
                turn("a", "user", "can i bring my tortoise", "nlu_fallback", 0.3, 1),
                turn("a", "user", "erm the tortoise thing", "faq", 0.41, 2),
                turn("a", "user", "fine", "affirm", 0.97, 3),
                # b: understood, but a ticket opened after these; the last two count
                turn("b", "user", "hi", "greet", 0.99, 0),
                turn("b", "user", "my invoice is wrong", "billing_question", 0.93, 1),
                turn("b", "user", "i was charged twice", "billing_question", 0.95, 2),
                turn("b", "user", "hello?", None, None, 4),  # held for the agent
                # c: out of the period
                turn("c", "user", "gibberish", "nlu_fallback", 0.3, 60 * 24 * 10),
            ]
        )
        s.add(
            TicketRow(
                conversation_id="b",
                channel="voice",
                status="queued",
                reason="user_request",
                skill="billing",
                priority=1,
                version=0,
                created_at=T0 + timedelta(minutes=3),
                queued_at=T0 + timedelta(minutes=3),
            )
        )
    found = await collect(engine, T0, T0 + timedelta(days=1), 0.5)
    got = {c.text: (c.channel, c.reasons) for c in found}
    assert got == {
        "can i bring my tortoise": ("webchat", [Reason.FALLBACK, Reason.LOW_CONFIDENCE]),
        "erm the tortoise thing": ("webchat", [Reason.LOW_CONFIDENCE]),
        "my invoice is wrong": ("voice", [Reason.HANDOFF]),
        "i was charged twice": ("voice", [Reason.HANDOFF]),
    }
    tortoise = next(c for c in found if c.text == "can i bring my tortoise")
    assert (tortoise.conversation_id, tortoise.intent, tortoise.confidence) == (
        "a",
        "nlu_fallback",
        0.3,
    )
    # a decided turn leaves the inbox
    async with sessions.begin() as s:
        s.add(
            UserRow(
                username="d",
                display_name="d",
                password_hash="x",
                role="designer",
                skills={},
                max_chats=1,
                presence="offline",
                presence_since=T0,
                disabled=False,
                created_at=T0,
            )
        )
        s.add(
            ReviewDecisionRow(
                turn_id=tortoise.turn_id,
                action="ignore",
                text=tortoise.text,
                added=False,
                created_at=T0,
            )
        )
    again = await collect(engine, T0, T0 + timedelta(days=1), 0.5)
    assert "can i bring my tortoise" not in {c.text for c in again}
    assert len(again) == 3
    await engine.dispose()


# -- grouping ------------------------------------------------------------------------------
def dog_variants(n: int = 100, seed: int = 7) -> list[str]:
    """``n`` ways callers and typists ask the same question: fillers, politeness, typos."""
    rnd = random.Random(seed)
    pre = ["", "um ", "hi ", "hello, ", "sorry ", "quick question, ", "uh ", "hey so "]
    core = [
        "can i bring my dog to the appointment",
        "can i bring my dog with me",
        "can i bring my dog along to my appointment",
        "is it ok if i bring my dog",
        "can i bring the dog",
        "could i bring my dog to the appointment",
        "am i allowed to bring my dog with me",
        "can i bring my dog in",
    ]
    suf = ["", "?", " please", " thanks", " at all", " or not", ", is that ok"]
    out: set[str] = set()
    while len(out) < n:
        s = rnd.choice(pre) + rnd.choice(core) + rnd.choice(suf)
        if rnd.random() < 0.3:
            i = rnd.randrange(1, len(s) - 1)
            s = s[:i] + s[i + 1 :]
        out.add(s)
    return sorted(out)


OTHERS = {
    "wifi": ["do you have wifi", "do you have free wifi please", "um do you have wifi"],
    "park": ["where can i park", "where can i park my car", "where do i park"],
    "bill": ["i was charged twice on my bill", "why was i charged twice on my bill"],
    "one": ["hi", "yes", "my cat is sick", "asdf", "do you sell gift cards", "the appointment"],
}


def _cands(texts: list[str]) -> list[Candidate]:
    return [
        Candidate(i, f"c{i}", "webchat", t, "nlu_fallback", 0.3, T0, [Reason.FALLBACK])
        for i, t in enumerate(texts)
    ]


def test_a_hundred_variants_make_one_group_and_others_stay_apart() -> None:
    dogs = dog_variants()
    others = [t for ts in OTHERS.values() for t in ts]
    texts = dogs + others
    random.Random(3).shuffle(texts)
    groups = group(_cands(texts))
    by_text = {t: g.id for g in groups for t in (texts[i] for i in g.turn_ids)}
    assert len({by_text[t] for t in dogs}) == 1
    dog_group = next(g for g in groups if g.id == by_text[dogs[0]])
    assert dog_group.count == 100 and groups[0] is dog_group
    assert dog_group.intent == "nlu_fallback" and dog_group.reasons == {"fallback": 100}
    for name, ts in OTHERS.items():
        assert not {by_text[t] for t in ts} & {dog_group.id}, name
        if name != "one":
            assert len({by_text[t] for t in ts}) == 1, name
    assert len({by_text[t] for t in OTHERS["one"]}) == len(OTHERS["one"])


def test_group_reports_the_most_common_understood_intent() -> None:
    cands = _cands(["where can i park", "where can i park?", "um where can i park", "hello"])
    cands[0].intent = "parking"
    cands[1].intent = "location"
    cands[2].intent = "parking"
    [g, _] = group(cands)
    assert (g.count, g.intent, g.intents) == (3, "parking", {"parking": 2, "location": 1})


def test_grouping_a_few_thousand_turns_is_fast() -> None:
    # real wordings: the training and held-out examples, plus the dog question's variants
    real = [e.text for e in read_examples(ROOT / "nlu-data" / "data")]
    real += [e.text for e in read_examples(ROOT / "tests" / "nlu" / "test.yml")]
    texts = (real * 3 + dog_variants() * 10)[:3000]
    started = time.perf_counter()
    groups = group(_cands(texts))
    elapsed = time.perf_counter() - started
    assert sum(g.count for g in groups) == 3000
    print(f"grouped {len(texts)} turns into {len(groups)} groups in {elapsed * 1000:.0f} ms")
    assert elapsed < 5.0, f"{elapsed:.2f}s"


# -- round-trip edits of the training data ---------------------------------------------------
@pytest.fixture
def project(tmp_path: Path) -> Path:
    dst = tmp_path / "nlu-data"
    shutil.copytree(ROOT / "nlu-data", dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def inserted(old: str, new: str) -> list[tuple[int, list[str]]]:
    """(line index, lines) of each insertion; fails if anything else changed."""
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    out = []
    for tag, i1, _i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        assert tag in ("equal", "insert"), (tag, a[i1:_i2], b[j1:j2])
        if tag == "insert":
            out.append((i1, b[j1:j2]))
    return out


def _block_end(text: str, intent: str) -> int:
    """The line index after the last example line of ``intent``'s block."""
    lines = text.splitlines()
    start = lines.index(f"  - intent: {intent}")
    i = start + 2
    while i < len(lines) and lines[i].startswith("      - "):
        i += 1
    return i


def test_append_keeps_every_byte_but_the_new_lines(project: Path) -> None:
    business = project / "data" / "nlu" / "business.yml"
    people = project / "data" / "nlu" / "people.yml"
    old_b, old_p = business.read_text(), people.read_text()
    res = append_examples(
        project,
        "parking",
        ["Where can I leave my car?", "where can i park", "is there a car park near you"],
    )
    assert res.file == business
    assert res.added == ["Where can I leave my car?", "is there a car park near you"]
    assert res.duplicates == ["where can i park"]
    assert inserted(old_b, business.read_text()) == [
        (
            _block_end(old_b, "parking"),
            ["      - Where can I leave my car?\n", "      - is there a car park near you\n"],
        )
    ]
    # out of scope goes to the out_of_scope intent's file; brackets cannot annotate entities
    res = append_examples(project, "out_of_scope", ["what is the [capital](city) of peru"])
    assert res.file == people and res.added == ["what is the (capital)(city) of peru"]
    assert inserted(old_p, people.read_text()) == [
        (_block_end(old_p, "out_of_scope"), ["      - what is the (capital)(city) of peru\n"])
    ]
    # a retrieval sub-intent, and an example another intent has already
    faq = project / "data" / "nlu" / "faq.yml"
    old_f = faq.read_text()
    res = append_examples(project, "faq/pets", ["can my tortoise come too", "where can i park?"])
    assert res.added == ["can my tortoise come too"]
    assert res.conflicts == {"where can i park?": "parking"}
    assert inserted(old_f, faq.read_text()) == [
        (_block_end(old_f, "faq/pets"), ["      - can my tortoise come too\n"])
    ]
    with pytest.raises(NluEditError):
        append_examples(project, "no_such_intent", ["x"])


def test_a_new_intent_gets_its_file_and_a_domain_entry(project: Path) -> None:
    domain = project / "domain.yml"
    old = domain.read_text()
    res = append_examples(
        project, "lost_property_report", ["i lost my scarf", "i left my umbrella"], new_intent=True
    )
    new_file = project / "data" / "nlu" / "lost_property_report.yml"
    assert res.file == new_file and res.created_file and res.domain_changed
    assert new_file.read_text() == (
        'version: "3.1"\n\n# lost_property_report: added from the review inbox in the desk.\n'
        "nlu:\n  - intent: lost_property_report\n    examples: |\n"
        "      - i lost my scarf\n      - i left my umbrella\n"
    )
    lines = old.splitlines()
    assert inserted(old, domain.read_text()) == [
        (lines.index("  - faq") + 1, ["  - lost_property_report\n"])
    ]
    with pytest.raises(NluEditError, match="already exists"):
        append_examples(project, "lost_property_report", ["x y"], new_intent=True)
    with pytest.raises(NluEditError, match="name"):
        append_examples(project, "Bad Name", ["x y"], new_intent=True)


# -- the API: roles and CSRF -----------------------------------------------------------------
def _has_review_routes(app: web.Application) -> bool:
    return any(
        r.resource is not None and r.resource.canonical == "/desk/review"
        for r in app.router.routes()
    )


def review_app(settings: Settings) -> web.Application:
    app = create_app(settings)
    if not _has_review_routes(app):  # until bot/app.py registers them
        review_api.add_routes(app)
    return app


async def add_users(settings: Settings, *users: tuple[str, UserRole]) -> None:
    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        store = UserStore(engine)
        for name, role in users:
            await store.add(name, PASSWORD, role=role, display_name=name, skills={"general": 1})
    finally:
        await engine.dispose()


async def login(client: TestClient[Any, Any], username: str) -> str:
    r = await client.post("/desk/api/login", json={"username": username, "password": PASSWORD})
    assert r.status == 200, await r.text()
    return str((await r.json())["csrf_token"])


@pytest.fixture
async def review_client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    project = tmp_path / "nlu-data"
    shutil.copytree(ROOT / "nlu-data", project, ignore=shutil.ignore_patterns("__pycache__"))
    settings, _ = instance_settings(tmp_path / "data", RECEPTIONIST_RASA__PROJECT_DIR=str(project))
    await add_users(
        settings,
        ("dana", UserRole.DESIGNER),
        ("adam", UserRole.ADMIN),
        ("ana", UserRole.AGENT),
        ("sue", UserRole.SUPERVISOR),
    )
    async with TestClient(TestServer(review_app(settings))) as client:
        yield client


async def test_only_designers_and_admins_may_review(review_client: TestClient[Any, Any]) -> None:
    c = review_client
    r = await c.get("/desk/api/review/groups")
    assert r.status == 401
    r = await c.get("/desk/review", allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == "/desk/login"
    for name in ("ana", "sue"):
        csrf = await login(c, name)
        for method, path in (
            ("GET", "/desk/api/review/groups"),
            ("GET", "/desk/review"),
            ("POST", "/desk/api/review/retrain"),
            ("POST", "/desk/api/review/decisions"),
            ("GET", "/desk/api/review/jobs/latest"),
        ):
            r = await c.request(method, path, headers={"X-CSRF-Token": csrf}, json={})
            assert r.status == 403, (name, path)
    for name in ("dana", "adam"):
        await login(c, name)
        r = await c.get("/desk/api/review/groups")
        assert r.status == 200
        data = await r.json()
        assert data["groups"] == [] and data["low_confidence"] == 0.5
        r = await c.get("/desk/review")
        assert r.status == 200 and "review.js" in await r.text()
        r = await c.get("/desk/api/review/intents")
        assert "faq/pets" in (await r.json())["intents"]


async def test_state_changes_need_the_csrf_token(review_client: TestClient[Any, Any]) -> None:
    c = review_client
    csrf = await login(c, "dana")
    body = {"turn_ids": [1], "action": "ignore"}
    for headers in ({}, {"X-CSRF-Token": "wrong"}):
        for path in ("/desk/api/review/decisions", "/desk/api/review/retrain"):
            r = await c.post(path, json=body, headers=headers)
            assert r.status == 403 and (await r.json())["error"]["code"] == "csrf_failed"
    r = await c.post("/desk/api/review/decisions", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status == 409  # right token, but no such turn
    r = await c.post(
        "/desk/api/review/decisions",
        json={"turn_ids": [1], "action": "assign"},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status == 422
    r = await c.get("/desk/api/review/groups?from=2026-01-01")
    assert r.status == 422


# -- end to end: decide, retrain, reload, the conversation goes on --------------------------
def _texts(res: dict[str, Any]) -> str:
    return " ".join(r["text"] or "" for r in res["replies"])


@pytest.fixture(scope="module")
def copied_stack(
    rasa_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RasaStack, BotService]]:
    """A Rasa stack and bot service on a copy of the project (and of its current model), so
    the retrain changes neither the real nlu-data/ nor the session's Rasa server."""
    home = tmp_path_factory.mktemp("review-e2e")
    project = home / "nlu-data"
    shutil.copytree(ROOT / "nlu-data", project, ignore=shutil.ignore_patterns("__pycache__"))
    models = home / "models"
    models.mkdir()
    model = Path(shutil.copy2(rasa_model, models / rasa_model.name))
    settings, env = instance_settings(
        home / "data",
        RECEPTIONIST_RASA__PROJECT_DIR=str(project),
        RECEPTIONIST_RASA__MODEL_DIR=str(models),
        RECEPTIONIST_ANALYTICS__LOW_CONFIDENCE="1.0",
    )
    asyncio.run(add_users(settings, ("dana", UserRole.DESIGNER)))
    stack = RasaStack(settings, model)
    stack.start_actions()
    svc = BotService(settings, env)
    try:
        stack.start_server()
        if _has_review_routes(create_app(settings)):
            svc.start()
        else:  # until bot/app.py registers the review routes: the same app, plus them
            svc.proc = _start_with_review_routes(svc)
        yield stack, svc
    finally:
        svc.stop()
        stack.stop()


LAUNCH = (
    "from aiohttp import web; from bot.config import load_settings; "
    "from tests.test_review import review_app; s = load_settings(); "
    "web.run_app(review_app(s), host=s.server.host, port=s.server.port, print=None)"
)


def _start_with_review_routes(svc: BotService) -> subprocess.Popen[bytes]:
    svc.log.parent.mkdir(parents=True, exist_ok=True)
    with svc.log.open("ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCH],
            cwd=ROOT,
            env=svc.env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    wait_until(
        lambda: http_json("GET", svc.url + "/healthz", timeout=2)[0] == 200,
        60,
        "bot service",
        proc,
        svc.log,
    )
    return proc


def test_assign_retrain_reload_and_the_conversation_goes_on(
    copied_stack: tuple[RasaStack, BotService],
) -> None:
    stack, svc = copied_stack
    base = svc.url
    # a conversation in the middle of the booking form when the model changes
    booking = svc.new_conversation()
    assert "Which treatment" in _texts(svc.say(booking, "i'd like to book an appointment"))
    # the question to teach
    other = svc.new_conversation()
    svc.say(other, "is my tortoise welcome in the waiting room")

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    csrf = ""

    def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        req = urllib.request.Request(
            base + path,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Content-Type": "application/json", "X-CSRF-Token": csrf},
        )
        try:
            with opener.open(req, timeout=60) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    status, data = call("POST", "/desk/api/login", {"username": "dana", "password": PASSWORD})
    assert status == 200
    csrf = data["csrf_token"]

    status, data = call("GET", "/desk/api/review/groups")
    assert status == 200, data
    [g] = [g for g in data["groups"] if "tortoise" in g["label"]]
    status, data = call(
        "POST",
        "/desk/api/review/decisions",
        {"turn_ids": g["turn_ids"], "action": "assign", "intent": "faq/pets"},
    )
    assert status == 200, data
    assert data["result"]["added"] == ["is my tortoise welcome in the waiting room"]
    assert data["result"]["file"] == "data/nlu/faq.yml"
    status, data = call("GET", "/desk/api/review/groups")
    assert not [g for g in data["groups"] if "tortoise" in g["label"]]

    started = time.monotonic()
    status, data = call("POST", "/desk/api/review/retrain", {})
    assert status == 202, data
    job_id = data["job"]["id"]
    status, _ = call("POST", "/desk/api/review/retrain", {})
    assert status == 409
    seen_steps = set()
    while True:
        status, data = call("GET", f"/desk/api/review/jobs/{job_id}")
        job = data["job"]
        seen_steps.add(job["step"])
        if job["state"] != "running":
            break
        assert time.monotonic() - started < 1200, job["lines"][-10:]
        time.sleep(2)
    elapsed = time.monotonic() - started
    assert job["state"] == "succeeded", job["lines"][-30:]
    print(f"retrain+reload {elapsed:.0f}s: {job['seconds']}")
    assert "train" in seen_steps
    assert any(line.startswith("[train]") for line in job["lines"])
    assert job["before"]["macro_f1"] > 0.5 and job["after"]["macro_f1"] > 0.5
    assert job["before"]["model"] != job["after"]["model"] == job["model"]
    assert set(job["delta"]) >= {"macro_f1", "accuracy"}
    assert job["reloaded"] == [stack.settings.rasa.base_url]
    token = stack.settings.rasa_token()
    _, st = http_json("GET", f"{stack.settings.rasa.base_url}/status?token={token}")
    assert Path(st["model_file"]).name == job["model"]

    # the form goes on where it was, on the new model
    assert "When would you like to come in?" in _texts(svc.say(booking, "sports massage"))
    # and the new model knows the new example
    _, parsed = http_json(
        "POST",
        f"{stack.settings.rasa.base_url}/model/parse?token={token}",
        {"text": "is my tortoise welcome in the waiting room"},
    )
    assert parsed["intent"]["name"] == "faq"
    assert parsed["response_selector"]["faq"]["response"]["intent_response_key"] == "faq/pets"
