"""`receptionist nlu validate` on the shipped project and on deliberately broken copies."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bot.nlu.validate import Finding, check_project
from tests.procs import ROOT

PROJECT = ROOT / "nlu-data"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    dst = tmp_path / "nlu-data"
    shutil.copytree(PROJECT, dst, ignore=shutil.ignore_patterns("__pycache__", ".rasa"))
    return dst


def cli(project: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "nlu", "validate", "--project", str(project), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def errors(findings: list[Finding]) -> list[str]:
    return [str(f) for f in findings if f.level == "error"]


def line_of(path: Path, text: str) -> int:
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return i
    raise AssertionError(f"{text!r} not in {path}")


def test_shipped_project_is_clean_including_rasas_own_validation() -> None:
    proc = cli(PROJECT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 error(s)" in proc.stdout


def test_duplicate_example_across_intents(project: Path) -> None:
    f = project / "data" / "nlu.yml"
    f.write_text(
        f.read_text().replace(
            "      - good evening\n", "      - good evening\n      - where are you\n", 1
        )
    )
    errs = errors(check_project(project))
    dup_line = line_of(f, "      - where are you")
    orig = project / "data" / "nlu" / "business.yml"
    here, there = f"{f}:{dup_line}", f"{orig}:{line_of(orig, '      - where are you')}"
    assert any("'location'" in e and "'greet'" in e and here in e and there in e for e in errs), (
        errs
    )


def test_near_duplicate_across_intents(project: Path) -> None:
    f = project / "data" / "nlu" / "people.yml"
    f.write_text(
        f.read_text().replace(
            "      - i want to make a complaint\n",
            "      - i want to make a complaint\n      - um what's your phone number please\n",
        )
    )
    errs = errors(check_project(project))
    assert any("nearly the same" in e and "contact_details" in e for e in errs), errs


def test_intent_below_minimum(project: Path) -> None:
    f = project / "data" / "nlu.yml"
    text = f.read_text()
    block = text.split("  - intent: slow_down\n", 1)[1].split("\n\n", 1)[0]
    kept = "\n".join(block.splitlines()[:6])  # examples: | and five examples
    f.write_text(text.replace(block, kept))
    errs = errors(check_project(project))
    line = line_of(f, "  - intent: slow_down")
    assert f"{f}:{line}: error: intent 'slow_down' has 5 examples; at least 15 are needed" in errs


def test_missing_response_and_action(project: Path) -> None:
    rules = project / "data" / "rules.yml"
    rules.write_text(
        rules.read_text()
        .replace("action: utter_slow_down", "action: utter_slow_dwn")
        .replace("action: action_parking", "action: action_parkign")
    )
    errs = errors(check_project(project))
    assert (
        f"{rules}:{line_of(rules, 'utter_slow_dwn')}: error: response 'utter_slow_dwn' is missing"
        in errs
    )
    assert any(
        e.startswith(f"{rules}:{line_of(rules, 'action_parkign')}:") and "action_parkign" in e
        for e in errs
    ), errs


def test_domain_action_without_implementation(project: Path) -> None:
    domain = project / "domain.yml"
    domain.write_text(
        domain.read_text().replace(
            "  - action_repeat\n", "  - action_repeat\n  - action_teleport\n"
        )
    )
    errs = errors(check_project(project))
    line = line_of(domain, "action_teleport")
    assert (
        f"{domain}:{line}: error: action 'action_teleport' is not implemented by any class "
        "in actions/" in errs
    )


def test_faq_key_without_answer(project: Path) -> None:
    domain = project / "domain.yml"
    text = domain.read_text()
    domain.write_text(re.sub(r"  utter_faq/wifi:\n    - text: .*\n", "", text))
    errs = errors(check_project(project))
    faq = project / "data" / "nlu" / "faq.yml"
    line = line_of(faq, "intent: faq/wifi")
    assert f"{faq}:{line}: error: 'faq/wifi' has no answer 'utter_faq/wifi'" in errs


def test_broken_business_profile(project: Path) -> None:
    b = project / "business.yml"
    b.write_text(b.read_text().replace("timezone: Europe/London", "timezone: Europe/Atlantis"))
    errs = errors(check_project(project))
    assert any("business.yml" in e and "timezone" in e for e in errs), errs


def test_cli_exit_code_and_messages(project: Path) -> None:
    assert cli(project, "--skip-rasa").returncode == 0
    f = project / "data" / "nlu.yml"
    f.write_text(f.read_text().replace("      - hiya\n", "      - hiya\n      - representative\n"))
    proc = cli(project, "--skip-rasa")
    assert proc.returncode == 1
    line = line_of(f, "      - representative")
    people = project / "data" / "nlu" / "people.yml"
    assert re.search(r"\.yml:\d+: error: example 'representative' appears in intents", proc.stderr)
    assert f"{f}:{line}" in proc.stderr
    assert f"{people}:{line_of(people, '      - representative')}" in proc.stderr
    assert "1 error(s)" in proc.stdout


def test_rasas_own_validation_failure_is_an_error(project: Path) -> None:
    rules = project / "data" / "rules.yml"
    rules.write_text(
        rules.read_text().replace(
            "      - action: utter_greet\n", "      - actoin: utter_greet\n", 1
        )
    )
    proc = cli(project)
    assert proc.returncode == 1
    assert "rasa data validate failed" in proc.stderr
