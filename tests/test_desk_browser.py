"""The desk in a real browser (Chromium via Playwright): an agent receives a handoff live,
reads the transcript, chats with the visitor and resolves."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import bot_for
from tests.procs import BotService, RasaStack
from tests.test_desk import PASSWORD, add_user


@pytest.fixture(scope="module")
def service(rasa: RasaStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotService]:
    svc = bot_for(
        rasa,
        tmp_path_factory.mktemp("browser-desk"),
        RECEPTIONIST_HANDOFF__ROUTER_INTERVAL_S="0.2",
        RECEPTIONIST_HANDOFF__WRAP_UP_S="0",
    )
    add_user(svc, "amy", "agent", "general:1", "Amy")
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


def _login(page: Page, base: str, username: str) -> None:
    page.goto(base + "/desk")
    expect(page).to_have_url(base + "/desk/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(base + "/desk")
    expect(page.get_by_role("status").filter(has_text="live")).to_be_visible()


def _wait_for(pred: Any, what: str, limit_s: float = 15) -> Any:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_agent_takes_a_chat_in_the_browser(
    browser: Browser, service: BotService, tmp_path: Path
) -> None:
    page = browser.new_page()
    _login(page, service.url, "amy")
    page.get_by_label("Status").select_option("available")

    cid = service.new_conversation(channel="webchat", customer={"name": "Vera"})
    service.say(cid, "what are your opening hours")
    res = service.say(cid, "can i talk to a person please")
    assert res["handoff"]["reason"] == "user_request"

    offers = page.locator("#offers")
    expect(offers).to_contain_text("user request", timeout=10_000)  # pushed, no reload
    expect(offers).to_contain_text("Vera")
    offers.get_by_role("button", name="Accept").click()

    log = page.get_by_role("log")
    expect(log).to_contain_text("what are your opening hours")
    expect(log).to_contain_text("We're open Monday to Friday")
    expect(log).to_contain_text("opening_hours")  # the intent is shown with its confidence
    expect(page.locator("#context")).to_contain_text("Vera")

    page.get_by_label("Reply").fill("Hello Vera, this is Amy. How can I help?")
    page.get_by_role("button", name="Send").click()
    expect(log).to_contain_text("Hello Vera, this is Amy.")

    def agent_turn() -> bool:
        conv = service.api("GET", f"/conversations/{cid}")[1]
        return any(
            t["role"] == "agent" and "this is Amy" in (t["text"] or "") for t in conv["transcript"]
        )

    _wait_for(agent_turn, "the visitor to receive the agent's reply")
    held = service.say(cid, "I need to move my appointment")
    assert held["replies"] == []  # the bot stays silent while Amy owns the chat
    expect(log).to_contain_text("I need to move my appointment")  # live, no reload

    page.screenshot(path=str(tmp_path / "desk.png"), full_page=True)
    page.get_by_label("Disposition").select_option("information_given")
    page.get_by_role("button", name="Resolve").click()
    expect(page.locator("#summary")).to_have_text("Resolved.")
    expect(page.locator("#mine")).to_contain_text("None.")
    conv = service.api("GET", f"/conversations/{cid}")[1]
    assert conv["status"] == "closed"
    assert any(
        e["type"] == "resolved" and e["data"]["disposition"] == "information_given"
        for e in conv["events"]
    )


def test_supervisor_sees_queues_and_reassigns(browser: Browser, service: BotService) -> None:
    add_user(service, "sam", "supervisor", "general:1", "Sam")
    amy, sam = browser.new_page(), browser.new_page()
    _login(amy, service.url, "amy")
    amy.get_by_label("Status").select_option("busy")  # not taking offers by herself
    _login(sam, service.url, "sam")
    expect(sam.get_by_role("heading", name="Queues & agents")).to_be_visible()

    cid = service.new_conversation(channel="webchat", customer={"name": "Walt"})
    service.say(cid, "i want to talk to a human")
    queues = sam.locator("#queues")
    expect(queues).to_contain_text("general", timeout=10_000)  # live, no reload
    expect(sam.locator("#agents")).to_contain_text("busy")
    ticket = sam.locator("#live-tickets li").filter(has_text="queued")
    expect(ticket).to_have_count(1)
    ticket.get_by_label("Reassign ticket").select_option(label="Amy")

    offers = amy.locator("#offers")
    expect(offers).to_contain_text("Walt", timeout=10_000)
    offers.get_by_role("button", name="Accept").click()
    expect(amy.get_by_role("log")).to_contain_text("i want to talk to a human")
    expect(sam.locator("#live-tickets")).to_contain_text("assigned")


def test_designer_reviews_in_the_browser(browser: Browser, service: BotService) -> None:
    """The review inbox's page: shared style sheet and script, its API calls with the CSRF
    token, and a decision recorded."""
    add_user(service, "dora", "designer", "general:1", "Dora")
    cid = service.new_conversation(channel="webchat")
    service.say(cid, "is my tortoise welcome in the waiting room")
    service.say(cid, "can i talk to a person please")  # the turns before a handoff are reviewed
    page = browser.new_page()
    page.goto(service.url + "/desk/review")
    expect(page).to_have_url(service.url + "/desk/login")
    page.get_by_label("Username").fill("dora")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(service.url + "/desk/review")
    expect(page.locator("#me")).to_have_text("Dora (designer)")
    expect(page.locator("#summary")).to_contain_text("group(s)")
    header = page.locator("header")
    assert header.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(18, 53, 91)"
    expect(page.locator("#desk-link")).to_be_hidden()  # only admins also work in the desk
    group = page.locator("#groups li.group").filter(has_text="tortoise")
    expect(group).to_have_count(1)
    group.get_by_role("button", name="Ignore").click()  # a POST: needs the CSRF token
    expect(page.locator("#decided")).to_contain_text("turn(s) decided.")
    expect(page.locator("#groups li.group").filter(has_text="tortoise")).to_have_count(0)
