"""Session fixtures: the trained model (reused when its fingerprint matches), a real Rasa
server with its action server, the real bot service, and a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from bot.nlu_model import ensure_model
from tests.procs import (
    BotService,
    Postgres,
    RasaStack,
    instance_settings,
    serving,
    start_postgres,
    stop_postgres,
)


@pytest.fixture(scope="session")
def rasa_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings, _ = instance_settings(tmp_path_factory.mktemp("train"))
    return ensure_model(settings, quiet=True)


def running_rasa(data_dir: Path, model: Path) -> Iterator[RasaStack]:
    """A real Rasa action server and Rasa server with their own data dir and ports."""
    settings, _ = instance_settings(data_dir)
    stack = RasaStack(settings, model)
    stack.start_actions()
    try:
        stack.start_server()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def main_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data dir shared by the session's Rasa stack and its main bot service, as in
    `receptionist up` (same secrets, so the action server can report bookings)."""
    return tmp_path_factory.mktemp("main")


@pytest.fixture(scope="session")
def rasa(main_home: Path, rasa_model: Path) -> Iterator[RasaStack]:
    yield from running_rasa(main_home, rasa_model)


def bot_for(rasa: RasaStack, data_dir: Path, **env: str) -> BotService:
    """A bot service with its own data dir, talking to the given Rasa stack."""
    rs = rasa.settings
    token_env = {
        "RECEPTIONIST_RASA__PORT": str(rs.rasa.port),
        "RECEPTIONIST_RASA__ACTIONS_PORT": str(rs.rasa.actions_port),
        "RECEPTIONIST_RASA__TOKEN": rs.rasa_token(),
    }
    token_env.update(env)
    settings, full_env = instance_settings(data_dir, **token_env)
    return BotService(settings, full_env)


@pytest.fixture(scope="session")
def bot(rasa: RasaStack, main_home: Path) -> Iterator[BotService]:
    yield from serving(
        bot_for(rasa, main_home, RECEPTIONIST_SERVER__PORT=str(rasa.settings.server.port))
    )


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    pg = start_postgres()
    try:
        yield pg
    finally:
        stop_postgres(pg)


CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium per test module: Playwright's sync API holds an event loop in this thread
    while it runs, which async tests in later modules must not find."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError("Chromium missing: `make test` installs the Debian package chromium")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()
