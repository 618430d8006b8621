"""The trained Rasa model: a content fingerprint of the training data, and training when
(and only when) the data, config or Rasa version changed."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from bot.config import Settings
from bot.rasa_runtime import rasa_env, rasa_executable

log = structlog.get_logger("bot.nlu")

MODEL_PREFIX = "receptionist-"
KEEP_MODELS = 3


class TrainingError(Exception):
    pass


def training_inputs(project: Path) -> list[Path]:
    """The files a model is trained from: config, domain and everything under data/."""
    files = [project / "config.yml"]
    domain = project / "domain.yml"
    files += (
        sorted((project / "domain").rglob("*.yml")) if (project / "domain").is_dir() else [domain]
    )
    files += sorted(
        p for p in (project / "data").rglob("*") if p.suffix in (".yml", ".yaml", ".txt")
    )
    return [f for f in files if f.is_file()]


def fingerprint(settings: Settings) -> str:
    """sha256 over the training inputs' paths and bytes, and the Rasa requirement pins."""
    project = settings.rasa_project
    h = hashlib.sha256()
    for f in training_inputs(project):
        h.update(str(f.relative_to(project)).encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    reqs = settings.home / "scripts" / "rasa-requirements.txt"
    if reqs.exists():
        h.update(reqs.read_bytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class ModelStatus:
    fingerprint: str
    path: Path

    @property
    def exists(self) -> bool:
        return self.path.is_file()


def model_status(settings: Settings) -> ModelStatus:
    fp = fingerprint(settings)
    return ModelStatus(fp, settings.rasa_models / f"{MODEL_PREFIX}{fp}.tar.gz")


def ensure_model(settings: Settings, *, force: bool = False, quiet: bool = False) -> Path:
    """Return the model for the current training data, training it first if needed."""
    st = model_status(settings)
    if st.exists and not force:
        log.info("nlu.model.current", model=str(st.path), fingerprint=st.fingerprint)
        return st.path
    project = settings.rasa_project
    settings.rasa_models.mkdir(parents=True, exist_ok=True)
    work = settings.data_path / "rasa"
    work.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(rasa_executable(settings)),
        "train",
        "--config",
        str(project / "config.yml"),
        "--domain",
        str(project / "domain.yml"),
        "--data",
        str(project / "data"),
        "--out",
        str(settings.rasa_models),
        "--fixed-model-name",
        st.path.name.removesuffix(".tar.gz"),
    ]
    print(
        f"[nlu] training the Rasa model from {project} (fingerprint {st.fingerprint}); "
        "about two minutes on 2 cores…",
        file=sys.stderr,
        flush=True,
    )
    started = time.monotonic()
    out = subprocess.DEVNULL if quiet else None
    logfile = work / "train.log"
    with logfile.open("wb") as fh:
        proc = subprocess.run(
            cmd, cwd=work, env=rasa_env(), stdout=fh if quiet else out, stderr=subprocess.STDOUT
        )
    elapsed = time.monotonic() - started
    if proc.returncode != 0 or not st.path.is_file():
        tail = logfile.read_text(errors="replace")[-2000:] if quiet else ""
        raise TrainingError(
            f"rasa train failed (exit {proc.returncode}) after {elapsed:.0f}s\n{tail}"
        )
    print(f"[nlu] trained {st.path.name} in {elapsed:.1f}s", file=sys.stderr, flush=True)
    log.info("nlu.model.trained", model=str(st.path), seconds=round(elapsed, 1))
    _prune(settings, keep=st.path)
    return st.path


def _prune(settings: Settings, keep: Path) -> None:
    models = sorted(
        settings.rasa_models.glob(f"{MODEL_PREFIX}*.tar.gz"),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in models[KEEP_MODELS:]:
        if old != keep:
            old.unlink(missing_ok=True)
