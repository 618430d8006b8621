"""``/metrics`` of the bot service: Prometheus text that parses, requests counted by route
template (never the raw path), NLU latency, queue and connection gauges."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from bot.app import create_app
from tests.conftest import bot_for
from tests.procs import BotService, RasaStack, http_json, instance_settings

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
CONV = "/api/v1/conversations/{conversation_id}"


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse(r.read().decode())


def requests(samples: Samples, method: str, route: str, status: str) -> float:
    return value(
        samples, "receptionist_http_requests_total", method=method, route=route, status=status
    )


@pytest.fixture(scope="module")
def svc(rasa: RasaStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotService]:
    """A bot service with its own database, so the queue gauges start empty."""
    bot = bot_for(rasa, tmp_path_factory.mktemp("metrics"))
    bot.start()
    try:
        yield bot
    finally:
        bot.stop()


def test_requests_counted_by_route_template(svc: BotService) -> None:
    before = scrape(svc.url)
    cid = svc.new_conversation(channel="api")
    svc.say(cid, "what are your opening hours")
    for _ in range(2):
        assert svc.api("GET", f"/conversations/{cid}")[0] == 200
    assert http_json("GET", svc.url + f"/no/such/{cid}")[0] == 404
    assert svc.api("GET", "/conversations/nope")[0] == 404
    after = scrape(svc.url)

    def delta(method: str, route: str, status: str) -> float:
        return requests(after, method, route, status) - requests(before, method, route, status)

    assert delta("POST", "/api/v1/conversations", "201") == 1
    assert delta("POST", CONV + "/messages", "200") == 1
    assert delta("GET", CONV, "200") == 2
    assert delta("GET", CONV, "404") == 1  # a known route, an unknown id
    assert delta("GET", "unmatched", "404") == 1
    routes = {dict(labels).get("route") for (_, labels) in after}
    assert not any(r and cid in r for r in routes)  # no raw paths, no ids in labels
    assert "/metrics" not in routes  # scrapes are not counted
    latency = "receptionist_http_request_duration_seconds_count"
    assert value(after, latency, method="POST", route=CONV + "/messages") >= 1
    # the message went through Rasa: the dialogue webhook and the tracker read
    for op in ("webhook", "tracker"):
        name = "receptionist_nlu_request_duration_seconds_count"
        assert value(after, name, operation=op) - value(before, name, operation=op) == 1
    assert value(after, "receptionist_database_up") == 1
    assert value(after, "process_cpu_seconds_total") > 0


def test_queue_gauge_reflects_a_created_ticket(svc: BotService) -> None:
    queued = {"status": "queued", "skill": "billing"}
    assert value(scrape(svc.url), "receptionist_handoff_tickets", **queued) == 0
    cid = svc.new_conversation(channel="webchat")
    status, body = svc.api("POST", f"/conversations/{cid}/handoff", {"skill": "billing"})
    assert status == 200, body
    after = scrape(svc.url)
    assert value(after, "receptionist_handoff_tickets", **queued) == 1
    # the default skill is always there, at 0 when nobody waits
    general = frozenset({"status": "queued", "skill": "general"}.items())
    assert after[("receptionist_handoff_tickets", general)] == 0
    assert value(after, "receptionist_handoff_oldest_wait_seconds", skill="billing") >= 0
    assert (
        value(
            after, "receptionist_conversations_open", channel="webchat", status="handoff_requested"
        )
        == 1
    )
    assert value(after, "receptionist_agents", presence="available") == 0  # nobody logged in


async def test_open_webchat_connections(svc: BotService) -> None:
    gauge = "receptionist_websocket_connections"
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(svc.url.replace("http", "ws", 1) + "/webchat/ws")
        await ws.send_str(json.dumps({"type": "hello", "v": 1}))
        welcome = json.loads((await ws.receive(timeout=15)).data)
        assert welcome["type"] == "welcome"
        open_now = await asyncio.to_thread(scrape, svc.url)
        assert value(open_now, gauge, route="/webchat/ws") == 1
        await ws.close()
    deadline = time.monotonic() + 5
    while value(await asyncio.to_thread(scrape, svc.url), gauge, route="/webchat/ws") != 0:
        assert time.monotonic() < deadline, "the webchat connection is still counted"
        await asyncio.sleep(0.1)
    later = await asyncio.to_thread(scrape, svc.url)
    assert requests(later, "GET", "/webchat/ws", "101") >= 1


async def test_rasa_errors_counted_and_apps_do_not_share_metrics(tmp_path: Path) -> None:
    """In-process, with no Rasa listening: the failed call is counted by its error code."""
    settings_one, _ = instance_settings(tmp_path / "one")
    settings_two, _ = instance_settings(tmp_path / "two")
    async with (
        TestClient(TestServer(create_app(settings_one))) as one,
        TestClient(TestServer(create_app(settings_two))) as two,
    ):
        cid = (await (await one.post("/api/v1/conversations", json={})).json())["id"]
        r = await one.post(f"/api/v1/conversations/{cid}/messages", json={"text": "hi"})
        assert r.status == 200  # the visitor gets an apology; the service keeps serving
        first = parse(await (await one.get("/metrics")).text())
        assert (
            value(
                first,
                "receptionist_nlu_errors_total",
                operation="webhook",
                code="rasa_unreachable",
            )
            == 1
        )
        second = parse(await (await two.get("/metrics")).text())
        assert requests(second, "POST", "/api/v1/conversations", "201") == 0
        assert value(second, "receptionist_nlu_errors_total", operation="webhook") == 0
