"""A simulated stretch of traffic through the real stack (bot service, Rasa, action server,
desk agents), then every analytics view on what it produced: the report, the live
dashboard in Chromium, /metrics and observed-data staffing. The figures are checked against
what the simulator saw happen, not against numbers written into the test."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import bot_for
from tests.procs import ROOT, BotService, RasaStack, http_json
from tests.test_desk import PASSWORD, add_user

CONVERSATIONS = 12


@pytest.fixture(scope="module")
def sim_bot(rasa: RasaStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotService]:
    """A bot service of its own: simulated agents and traffic must not reach other tests."""
    svc = bot_for(
        rasa,
        tmp_path_factory.mktemp("simday"),
        RECEPTIONIST_HANDOFF__WRAP_UP_S="1",
        RECEPTIONIST_HANDOFF__ROUTER_INTERVAL_S="0.5",
    )
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


def cli(svc: BotService, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=ROOT,
        env=svc.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def simulated(sim_bot: BotService) -> dict[str, Any]:
    proc = cli(
        sim_bot,
        "simulate",
        "--conversations",
        str(CONVERSATIONS),
        "--agents",
        "2",
        "--duration",
        "10",
        "--patience",
        "30",
        "--seed",
        "11",
        "--url",
        sim_bot.url,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    tally: dict[str, Any] = json.loads(out[out.index("{") : out.rindex("}") + 1])
    return tally["chats"]  # type: ignore[no-any-return]


def kpi_csv(path: Path) -> dict[str, str]:
    with path.open(newline="") as fh:
        return {f"{r['section']}.{r['kpi']}": r["value"] for r in csv.DictReader(fh)}


def test_the_report_counts_what_the_simulator_did(
    sim_bot: BotService, simulated: dict[str, Any], tmp_path: Path
) -> None:
    assert simulated["conversations"] == CONVERSATIONS and simulated["errors"] == {}
    assert simulated["handed_off"] >= 1 and simulated["accepted_by_agents"] >= 1
    day = datetime.now(UTC).date().isoformat()
    proc = cli(sim_bot, "report", "--from", day, "--to", day, "--out", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    k = kpi_csv(tmp_path / "r" / "kpis.csv")
    assert int(k["bot.conversations"]) == CONVERSATIONS
    # every accepted offer is one answered ticket (no transfers in the simulation)
    assert int(k["queue.answered"]) == simulated["accepted_by_agents"]
    assert int(k["queue.resolved"]) == simulated["resolved_by_agents"]
    # each visitor that waited for a person has a ticket; callback requests add their own
    assert int(k["queue.tickets"]) >= simulated["handed_off"]
    assert int(k["bot.handed_off"]) + int(k["bot.contained"]) == int(k["bot.engaged"])
    # (bookings are not compared: the session's action server reports them to the session's
    # main bot service, not to this one; tests/test_nlu_conversations.py covers that path)
    assert float(k["agents.occupancy"]) > 0
    html = (tmp_path / "r" / "report.html").read_text()
    assert "new Chart(" in html


def test_observed_staffing_runs_on_the_simulated_tickets(
    sim_bot: BotService, simulated: dict[str, Any]
) -> None:
    day = datetime.now(UTC).date().isoformat()
    proc = cli(sim_bot, "staffing", "--observed", "--from", day, "--to", day)
    assert proc.returncode == 0, proc.stderr
    assert "agents" in proc.stdout.lower()


def test_metrics_show_the_desk_and_chat_traffic(
    sim_bot: BotService, simulated: dict[str, Any]
) -> None:
    status, _ = http_json("GET", sim_bot.url + "/healthz")
    assert status == 200
    import urllib.request

    with urllib.request.urlopen(sim_bot.url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    accepts = [
        v
        for (name, labels), v in samples.items()
        if name == "receptionist_http_requests_total"
        and dict(labels).get("route") == "/desk/api/tickets/{ticket_id}/accept"
    ]
    assert sum(accepts) >= simulated["accepted_by_agents"]


def test_live_dashboard_for_supervisors_only(
    sim_bot: BotService, simulated: dict[str, Any], browser: Browser
) -> None:
    add_user(sim_bot, "lead", "supervisor", "general:1", "Lee")
    add_user(sim_bot, "plainagent", "agent", "general:1", "Pat")
    page = browser.new_page()
    try:
        page.goto(sim_bot.url + "/desk/login")
        page.fill("input[name=username]", "lead")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/desk")
        page.goto(sim_bot.url + "/desk/dashboard")
        page.wait_for_function("window.__dashboard && window.__dashboard.snapshots >= 1")
        tile = page.locator('[data-kpi="bot.conversations"] .value').first
        assert tile.inner_text() == str(CONVERSATIONS)
        assert page.locator("#c-conv").is_visible()
        # a new conversation reaches the open dashboard without a reload (live push)
        sim_bot.new_conversation()
        page.wait_for_function(
            f"window.__dashboard.last.bot.conversations === {CONVERSATIONS + 1}", timeout=20000
        )
    finally:
        page.close()
    agent_page = browser.new_page()
    try:
        agent_page.goto(sim_bot.url + "/desk/login")
        agent_page.fill("input[name=username]", "plainagent")
        agent_page.fill("input[name=password]", PASSWORD)
        agent_page.click("button[type=submit]")
        agent_page.wait_for_url("**/desk")
        agent_page.goto(sim_bot.url + "/desk/dashboard")
        assert agent_page.url.endswith("/desk")  # sent back to the desk
        status = agent_page.evaluate("fetch('/desk/api/kpis').then(r => r.status)")
        assert status == 403
    finally:
        agent_page.close()
