"""The `receptionist` command: chat, doctor, nlu train, db upgrade, bench."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from bot.nlu_model import fingerprint
from bot.store.engine import head_revision
from tests.procs import ROOT, BotService, free_port, instance_settings


def run_cli(
    *args: str, env: dict[str, str], stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_chat_talks_through_the_service(bot: BotService) -> None:
    proc = run_cli("chat", "--url", bot.url, env=bot.env, stdin="hello\n1\nwhere are you\n/quit\n")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "bot> Hello! I'm the virtual receptionist" in out
    assert "[1] Opening hours" in out
    assert "Monday to Friday" in out  # button 1 was sent as its payload
    assert "Harbour Street" in out
    cid = out.split("conversation ", 1)[1].split(".", 1)[0]
    conv = bot.api("GET", f"/conversations/{cid}")[1]
    assert [t["text"] for t in conv["transcript"] if t["role"] == "user"] == [
        "hello",
        "/opening_hours",
        "where are you",
    ]


def test_chat_without_service_explains(tmp_path: Path) -> None:
    _, env = instance_settings(tmp_path)
    proc = run_cli("chat", "--url", f"http://127.0.0.1:{free_port()}", env=env, stdin="")
    assert proc.returncode == 1
    assert "not reachable" in proc.stderr and "make run" in proc.stderr


def test_doctor_reports_every_dependency(tmp_path: Path, rasa_model: Path) -> None:
    _, env = instance_settings(tmp_path)
    proc = run_cli("doctor", env=env)
    out = proc.stdout
    assert proc.returncode == 0, out
    for name in ("python", "rasa ", "rasa model", "piper tts", "database"):
        assert f"[ok  ] {name}" in out, out
    assert "[ok  ] speech recognition ko vosk:" in out, out
    # no English Vosk model here: the fallback is said loudly, with the fix
    assert "[warn] speech recognition en FALLBACK: pocketsphinx" in out, out
    assert "receptionist models pull vosk-en-us-small" in out
    assert "[warn] rasa server" in out and "fix: make run" in out


def test_doctor_fails_with_fix_when_rasa_missing(tmp_path: Path) -> None:
    _, env = instance_settings(tmp_path, RECEPTIONIST_RASA__VENV=str(tmp_path / "no-venv"))
    proc = run_cli("doctor", env=env)
    assert proc.returncode == 1
    assert "[FAIL] rasa" in proc.stdout and "fix: make setup" in proc.stdout


def test_nlu_train_skips_when_unchanged(tmp_path: Path, rasa_model: Path) -> None:
    _, env = instance_settings(tmp_path)
    t0 = time.monotonic()
    proc = run_cli("nlu", "train", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(rasa_model)
    assert "training" not in proc.stderr
    assert time.monotonic() - t0 < 30  # no training run (a real one takes ~40 s)


def test_fingerprint_follows_training_data(tmp_path: Path) -> None:
    project = tmp_path / "nlu-data"
    shutil.copytree(ROOT / "nlu-data", project, ignore=shutil.ignore_patterns("__pycache__"))
    s, _ = instance_settings(tmp_path, RECEPTIONIST_RASA__PROJECT_DIR=str(project))
    before = fingerprint(s)
    (project / "actions" / "actions.py").write_text("# actions are not training data\n")
    assert fingerprint(s) == before
    nlu = project / "data" / "nlu.yml"
    nlu.write_text(nlu.read_text().replace("- hiya", "- hiya there"))
    changed = fingerprint(s)
    assert changed != before
    (project / "config.yml").write_text((project / "config.yml").read_text() + "\n# c\n")
    assert fingerprint(s) not in (before, changed)


def test_db_upgrade(tmp_path: Path) -> None:
    _, env = instance_settings(tmp_path)
    proc = run_cli("db", "upgrade", env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"revision {head_revision()}" in proc.stdout
    assert (tmp_path / "receptionist.db").exists()


def test_bench_api_reports_latency(bot: BotService) -> None:
    proc = run_cli("bench", "api", "--url", bot.url, "--messages", "5", env=bot.env)
    assert proc.returncode == 0, proc.stderr
    assert "median_ms" in proc.stdout and "p95_ms" in proc.stdout


def test_bench_handoff_measures_offer_latency(tmp_path: Path) -> None:
    _, env = instance_settings(tmp_path)
    proc = run_cli("bench", "handoff", "--agents", "2", "--tickets", "6", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "2 agents, 6 tickets" in proc.stdout
    median = float(proc.stdout.split("median_ms")[1].split()[0])
    assert 0 < median < 30_000
