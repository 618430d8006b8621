"""``receptionist nlu test``: train (if needed) the model for a pipeline config, serve it with a
real Rasa server, evaluate it on the held-out test file, optionally cross-validate with
Rasa's own ``rasa test nlu --cross-validation``, and write the report directory."""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.config import Settings
from bot.nlu.data import read_examples
from bot.nlu.evaluate import Report, evaluate, predict
from bot.nlu.report import write_report
from bot.nlu_model import TrainingError, ensure_model, model_status, training_inputs
from bot.rasa_runtime import rasa_env, rasa_executable


@dataclass(frozen=True)
class TestRun:
    report: Report
    out: Path
    model: Path
    train_seconds: float | None
    cross_validation: dict[str, Any] | None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _say(msg: str) -> None:
    print(f"[nlu] {msg}", file=sys.stderr, flush=True)


def model_for_config(settings: Settings, config: Path) -> tuple[Path, float | None]:
    """An NLU model trained with ``config`` on the project's data (cached by content)."""
    project = settings.rasa_project
    h = hashlib.sha256(config.read_bytes())
    for f in training_inputs(project):
        if f.name != "config.yml" or f.parent != project:
            h.update(str(f.relative_to(project)).encode() + f.read_bytes())
    name = f"eval-{config.stem}-{h.hexdigest()[:12]}"
    out_dir = settings.rasa_models / "eval"
    path = out_dir / f"{name}.tar.gz"
    if path.is_file():
        _say(f"model for {config} is up to date: {path.name}")
        return path, None
    out_dir.mkdir(parents=True, exist_ok=True)
    _say(f"training an NLU model with {config}…")
    started = time.monotonic()
    work = settings.data_path / "rasa"
    work.mkdir(parents=True, exist_ok=True)
    log = work / f"train-{name}.log"
    with log.open("wb") as fh:
        proc = subprocess.run(
            [
                str(rasa_executable(settings)),
                "train",
                "nlu",
                "--config",
                str(config),
                "--domain",
                str(project / "domain.yml"),
                "--nlu",
                str(project / "data"),
                "--out",
                str(out_dir),
                "--fixed-model-name",
                name,
            ],
            cwd=work,
            env=rasa_env(),
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    elapsed = time.monotonic() - started
    if proc.returncode != 0 or not path.is_file():
        tail = log.read_text(errors="replace")[-2000:]
        raise TrainingError(f"rasa train nlu failed (exit {proc.returncode})\n{tail}")
    _say(f"trained {path.name} in {elapsed:.1f}s")
    return path, elapsed


@contextlib.contextmanager
def rasa_server(settings: Settings, model: Path, timeout: float = 300) -> Iterator[tuple[str, str]]:
    """A Rasa server on a free loopback port serving ``model``; yields (url, token)."""
    port = _free_port()
    token = secrets.token_urlsafe(16)
    work = settings.data_path / "rasa"
    work.mkdir(parents=True, exist_ok=True)
    log = work / "nlu-test-server.log"
    fh = log.open("wb")
    proc = subprocess.Popen(
        [
            str(rasa_executable(settings)),
            "run",
            "--enable-api",
            "--auth-token",
            token,
            "--interface",
            "127.0.0.1",
            "--port",
            str(port),
            "--model",
            str(model),
        ],
        cwd=work,
        env=rasa_env(),
        stdout=fh,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _say(f"starting a Rasa server with {model.name}…")
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"rasa server exited ({proc.returncode}): "
                    f"{log.read_text(errors='replace')[-2000:]}"
                )
            with (
                contextlib.suppress(OSError, ValueError),
                urllib.request.urlopen(f"{url}/status?token={token}", timeout=2) as r,
            ):
                if json.loads(r.read()).get("model_file"):
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"rasa server not ready after {timeout}s (log: {log})")
            time.sleep(0.5)
        yield url, token
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        fh.close()


def cross_validate(settings: Settings, config: Path, folds: int, out: Path) -> dict[str, Any]:
    """Rasa's own k-fold cross-validation on the training data; returns its intent averages."""
    project = settings.rasa_project
    _say(f"cross-validation with {folds} folds (trains {folds} models)…")
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [
            str(rasa_executable(settings)),
            "test",
            "nlu",
            "--config",
            str(config),
            "--domain",
            str(project / "domain.yml"),
            "--nlu",
            str(project / "data"),
            "--cross-validation",
            "--folds",
            str(folds),
            "--out",
            str(out),
        ],
        cwd=settings.data_path,
        env=rasa_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"rasa test nlu --cross-validation failed (exit {proc.returncode})")
    report = json.loads((out / "intent_report.json").read_text())
    result = {
        "folds": folds,
        "seconds": round(time.monotonic() - started, 1),
        "macro_f1": round(float(report["macro avg"]["f1-score"]), 4),
        "weighted_f1": round(float(report["weighted avg"]["f1-score"]), 4),
        "accuracy": round(float(report.get("accuracy", 0.0)), 4),
    }
    _say(f"cross-validation: macro-F1 {result['macro_f1']:.3f}")
    return result


def run_nlu_test(
    settings: Settings,
    *,
    test_file: Path,
    out: Path,
    config: Path | None = None,
    url: str | None = None,
    token: str | None = None,
    folds: int = 0,
) -> TestRun:
    """Evaluate the model (of ``config``, or the project's shipped model) on ``test_file``."""
    config = config.resolve() if config else None
    test_file, out = test_file.resolve(), out.resolve()
    examples = read_examples(test_file)
    if not examples:
        raise ValueError(f"{test_file}: no examples found")
    cfg_path = config or settings.rasa_project / "config.yml"
    cfg = yaml.safe_load(cfg_path.read_text())
    train_seconds: float | None = None
    if url is not None:
        model = Path("(running server)")
        _say(f"evaluating {len(examples)} examples through {url}")
        predictions = predict(examples, url, token)
    else:
        if config is None:
            started = time.monotonic()
            trains = not model_status(settings).exists
            model = ensure_model(settings)
            train_seconds = round(time.monotonic() - started, 1) if trains else None
        else:
            model, train_seconds = model_for_config(settings, config)
        with rasa_server(settings, model) as (srv, tok):
            _say(f"evaluating {len(examples)} examples")
            predictions = predict(examples, srv, tok)
    report = evaluate(predictions, cfg)
    cv = cross_validate(settings, cfg_path, folds, out / "cross-validation") if folds else None
    write_report(
        report,
        out,
        rasa_python=settings.rasa_venv / "bin" / "python",
        extra={
            "config": str(cfg_path),
            "model": str(model),
            "test_file": str(test_file),
            "train_seconds": train_seconds,
            "cross_validation": cv,
        },
    )
    return TestRun(report, out, model, train_seconds, cv)
