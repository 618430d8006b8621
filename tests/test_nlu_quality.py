"""The trained model on the held-out test set (tests/nlu/test.yml), through a real Rasa
server: the quality bar of the shipped bot, and the `receptionist nlu test` report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.nlu.data import read_examples
from bot.nlu.evaluate import FAQ_MIN_CONFIDENCE, Report, evaluate, predict
from tests.procs import ROOT, RasaStack

TEST_FILE = ROOT / "tests" / "nlu" / "test.yml"
TRAIN_DIR = ROOT / "nlu-data" / "data"


@pytest.fixture(scope="module")
def report(rasa: RasaStack) -> Report:
    examples = read_examples(TEST_FILE)
    return evaluate(predict(examples, rasa.settings.rasa.base_url, rasa.settings.rasa_token()))


def test_held_out_set_is_not_a_copy_of_the_training_data() -> None:
    train = {e.text.lower() for e in read_examples(TRAIN_DIR)}
    test = read_examples(TEST_FILE)
    copies = [e.where for e in test if e.text.lower() in train]
    assert not copies, f"held-out examples copied from the training data: {copies}"
    labels = {e.intent for e in test}
    assert "out_of_scope" in labels and "faq" in labels and len(labels) >= 30
    assert sum(e.intent == "out_of_scope" for e in test) >= 20


def test_in_scope_macro_f1_at_least_0_90(report: Report) -> None:
    assert report.macro_f1 >= 0.90, report.summary()


def test_out_of_scope_recall_at_least_0_80(report: Report) -> None:
    assert report.oos.recall >= 0.80, report.summary()


def test_faq_answers_selected(report: Report) -> None:
    assert report.faq_examples >= 40
    assert report.faq_end_to_end_accuracy >= 0.85, report.summary()


def test_faq_confidence_floor_is_the_same_in_the_actions_and_the_evaluation() -> None:
    actions = (ROOT / "nlu-data" / "actions" / "actions.py").read_text()
    m = re.search(r"^FAQ_MIN_CONFIDENCE = ([0-9.]+)$", actions, re.M)
    assert m and float(m.group(1)) == FAQ_MIN_CONFIDENCE


def test_nlu_test_command_writes_the_report(rasa: RasaStack, tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "nlu",
            "test",
            "--url",
            rasa.settings.rasa.base_url,
            "--token",
            rasa.settings.rasa_token(),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "macro-F1" in proc.stdout and "out-of-scope precision" in proc.stdout
    for name in (
        "report.json",
        "summary.txt",
        "intents.md",
        "misclassified.md",
        "misclassified.json",
        "thresholds.md",
        "confusion_matrix.png",
    ):
        assert (out / name).is_file(), name
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "report.json").read_text())
    assert set(data["per_intent"]) >= {"greet", "faq", "out_of_scope", "book_appointment"}
    assert {"precision", "recall", "f1", "support"} <= set(data["per_intent"]["greet"])
    assert 0 <= data["macro_f1"] <= 1 and 0 <= data["weighted_f1"] <= 1
    assert data["fallback_threshold"] is not None
    assert len(data["thresholds"]) > 10
