"""Rasa test stories (tests/rasa/test_stories.yml) through Rasa's own `rasa test core`, with
the trained model and the real action server of the test stack."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bot.rasa_runtime import rasa_env
from tests.procs import ROOT, RasaStack


def test_rasa_test_stories_pass(rasa: RasaStack, tmp_path: Path) -> None:
    endpoints = tmp_path / "endpoints.yml"
    endpoints.write_text(
        f"action_endpoint:\n  url: http://127.0.0.1:{rasa.settings.rasa.actions_port}/webhook\n"
    )
    out = tmp_path / "results"
    proc = subprocess.run(
        [
            str(rasa.settings.rasa_venv / "bin" / "rasa"),
            "test",
            "core",
            "--stories",
            str(ROOT / "tests" / "rasa" / "test_stories.yml"),
            "--model",
            str(rasa.model),
            "--endpoints",
            str(endpoints),
            "--out",
            str(out),
            "--fail-on-prediction-errors",
        ],
        cwd=tmp_path,
        env=rasa_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    failed = out / "failed_test_stories.yml"
    detail = failed.read_text() if failed.exists() else proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, detail
    assert "None of the test stories failed" in failed.read_text()
    report = (out / "story_report.json").read_text()
    assert '"accuracy": 1.0' in report
