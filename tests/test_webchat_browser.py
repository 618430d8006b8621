"""The webchat widget in a real browser (Chromium via Playwright) against the real service
and Rasa: chat, quick replies, reload with history, a server restart with a message sent
while disconnected (delivered once), handoff states, right-to-left."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import bot_for
from tests.procs import BotService, RasaStack
from tests.test_desk import add_user


@pytest.fixture(scope="module")
def site(rasa: RasaStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotService]:
    svc = bot_for(
        rasa, tmp_path_factory.mktemp("widget"), RECEPTIONIST_HANDOFF__ROUTER_INTERVAL_S="0.2"
    )
    add_user(svc, "nia", "agent", "general:1", "Nia")
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


def open_chat(page: Page, url: str) -> None:
    page.goto(url)
    page.get_by_role("button", name="Chat with us").click()
    expect(page.get_by_role("dialog")).to_be_visible()


def say(page: Page, text: str) -> None:
    box = page.get_by_role("textbox", name="Type your message…")
    box.fill(text)
    box.press("Enter")


def user_bubbles(page: Page, text: str) -> int:
    return page.locator(".msg.user").filter(has_text=text).count()


def test_chat_reload_and_restart(
    browser: Browser,
    site: BotService,
    tmp_path: Path,
) -> None:
    page = browser.new_page()
    open_chat(page, site.url + "/")
    log = page.get_by_role("log")
    say(page, "hello")
    expect(log).to_contain_text("virtual receptionist", timeout=15_000)
    page.get_by_role("group", name="Quick replies").get_by_role(
        "button", name="Opening hours"
    ).click()
    expect(log).to_contain_text("Monday to Friday")

    page.reload()  # the widget reopens on the same conversation with its history
    expect(page.get_by_role("dialog")).to_be_visible()
    expect(log).to_contain_text("Monday to Friday")
    assert user_bubbles(page, "hello") == 1
    assert user_bubbles(page, "Opening hours") == 1  # the button's title, not its payload
    assert user_bubbles(page, "/opening_hours") == 0

    site.stop()  # the connection drops; a message typed now waits in the outbox
    expect(page.get_by_role("dialog").get_by_role("status")).to_contain_text(
        "Reconnecting", timeout=10_000
    )
    say(page, "where are you located")
    site.start()
    expect(log).to_contain_text("Harbour Street", timeout=20_000)
    assert user_bubbles(page, "where are you located") == 1
    page.screenshot(path=str(tmp_path / "widget.png"))
    cid = page.evaluate(
        "() => JSON.parse(Object.entries(localStorage)"
        ".find(([k]) => k.startsWith('receptionist:'))[1]).cid"
    )
    conv = site.api("GET", f"/conversations/{cid}")[1]
    said = [t["text"] for t in conv["transcript"] if t["role"] == "user"]
    assert said == ["hello", "/opening_hours", "where are you located"]  # once each, in order


def test_handoff_states_in_the_widget(browser: Browser, site: BotService) -> None:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from tests.test_desk import Desk

    page = browser.new_page()
    open_chat(page, site.url + "/")
    say(page, "hi")
    expect(page.get_by_role("log")).to_contain_text("virtual receptionist", timeout=15_000)
    page.get_by_role("banner").get_by_role("button", name="Talk to a person").click()
    status = page.get_by_role("dialog").get_by_role("status")
    expect(status).to_contain_text("Connecting you to a person")
    expect(status).to_contain_text("number 1 in line")

    async def agent_answers() -> None:
        nia = await Desk(site.url).login("nia")
        await nia.connect()
        await nia.available()
        offer = await nia.next_event("offer")
        await nia.call("POST", f"/desk/api/tickets/{offer['ticket']['id']}/accept")
        await nia.call(
            "POST",
            f"/desk/api/tickets/{offer['ticket']['id']}/messages",
            {"text": "Hi, I'm Nia. How can I help?"},
        )
        await nia.close()

    # Playwright's sync API owns this thread's event loop: the agent works from another
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, agent_answers()).result(timeout=60)
    expect(status).to_contain_text("chatting with Nia")
    agent_msg = page.locator(".msg.agent").filter(has_text="How can I help?")
    expect(agent_msg).to_contain_text("Nia")


def test_right_to_left_and_translated(browser: Browser, site: BotService) -> None:
    page = browser.new_page()
    page.goto(site.url + "/?lang=fa")
    page.get_by_role("button", name="گفتگو با ما").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_have_attribute("dir", "rtl")
    say_box = page.get_by_role("textbox", name="پیام خود را بنویسید…")
    say_box.fill("سلام")
    say_box.press("Enter")
    bubble = page.locator(".msg.user").filter(has_text="سلام")
    expect(bubble).to_have_attribute("dir", "auto")
    page.keyboard.press("Escape")  # keyboard: Escape closes and focus returns to the launcher
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("button", name="گفتگو با ما")).to_be_focused()
