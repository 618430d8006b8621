"""The retrain job the review page starts: one at a time, in the background.

Steps: snapshot the Rasa project (so decisions made meanwhile do not change the data under
the trainer) → ``receptionist nlu validate`` checks → the "before" held-out scores of the
model the Rasa server has loaded (cached per model file) → ``ensure_model`` on the snapshot
(the model is named by the data's fingerprint, so ``receptionist up`` finds it later) →
``PUT /model`` on every Rasa server of the pool (Rasa swaps the model in place; trackers
live in the SQL tracker store, so conversations go on) → the "after" held-out scores.
Progress lines are kept on the job for the page to show."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import structlog

from bot.config import Settings
from bot.nlu.data import read_examples
from bot.nlu.evaluate import Report, evaluate, predict
from bot.nlu.validate import validate_project
from bot.nlu_model import ensure_model, model_status

log = structlog.get_logger("bot.review")

T = TypeVar("T")
MAX_LINES = 400
KEEP_JOBS = 20
RELOAD_TIMEOUT_S = 600.0
SCORE_KEYS = (
    "macro_f1",
    "weighted_f1",
    "accuracy",
    "in_scope_fallback_rate",
    "oos_precision",
    "oos_recall",
    "faq_end_to_end_accuracy",
)
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class JobState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class JobBusy(Exception):
    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.id} is running")
        self.job = job


@dataclass
class Job:
    id: str
    started_by: str
    started_at: datetime
    state: JobState = JobState.RUNNING
    step: str = "starting"
    lines: list[str] = field(default_factory=list)
    finished_at: datetime | None = None
    model: str | None = None
    reloaded: list[str] = field(default_factory=list)
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def say(self, line: str) -> None:
        self.lines.append(f"[{self.step}] {line}")
        if len(self.lines) > MAX_LINES:
            del self.lines[: len(self.lines) - MAX_LINES]

    def as_json(self) -> dict[str, Any]:
        delta = None
        if self.before and self.after:
            delta = {
                k: round(float(self.after[k]) - float(self.before[k]), 4)
                for k in SCORE_KEYS
                if isinstance(self.before.get(k), int | float)
                and isinstance(self.after.get(k), int | float)
            }
        return {
            "id": self.id,
            "state": self.state.value,
            "step": self.step,
            "started_by": self.started_by,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "lines": self.lines,
            "model": self.model,
            "reloaded": self.reloaded,
            "before": self.before,
            "after": self.after,
            "delta": delta,
            "error": self.error,
            "seconds": self.seconds,
        }


def scores_of(report: Report, model: str) -> dict[str, Any]:
    return {
        "model": model,
        "examples": report.examples,
        "macro_f1": report.macro_f1,
        "weighted_f1": report.weighted_f1,
        "accuracy": report.accuracy,
        "in_scope_fallback_rate": report.in_scope_fallback_rate,
        "oos_precision": report.oos.precision,
        "oos_recall": report.oos.recall,
        "faq_end_to_end_accuracy": report.faq_end_to_end_accuracy,
        "summary": report.summary(),
    }


async def in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a daemon thread: a training run that outlives the service's shutdown
    must not hold the process (the default executor is joined at exit)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def set_result(value: T) -> None:
        if not fut.done():
            fut.set_result(value)

    def set_error(exc: BaseException) -> None:
        if not fut.done():
            fut.set_exception(exc)

    def run() -> None:
        try:
            value = fn()
        except Exception as exc:  # noqa: BLE001 - handed to the awaiting task
            loop.call_soon_threadsafe(set_error, exc)
        else:
            loop.call_soon_threadsafe(set_result, value)

    threading.Thread(target=run, name="review-job", daemon=True).start()
    return await fut


class JobFailed(Exception):
    pass


class RetrainJobs:
    """Runs retrain jobs one at a time and remembers the last few."""

    def __init__(self, settings: Settings, *, test_file: Path | None = None) -> None:
        self._settings = settings
        self._test_file = test_file or settings.home / "tests" / "nlu" / "test.yml"
        self._work = settings.data_path / "review"
        self._jobs: dict[str, Job] = {}
        self._task: asyncio.Task[None] | None = None
        self._current: Job | None = None

    @property
    def current(self) -> Job | None:
        return self._current if self._current and self._current.state == JobState.RUNNING else None

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def latest(self) -> Job | None:
        return next(reversed(self._jobs.values()), None) if self._jobs else None

    def start(self, user: str) -> Job:
        running = self.current
        if running is not None:
            raise JobBusy(running)
        job = Job(id=secrets.token_hex(6), started_by=user, started_at=datetime.now(UTC))
        self._jobs[job.id] = job
        while len(self._jobs) > KEEP_JOBS:
            del self._jobs[next(iter(self._jobs))]
        self._current = job
        self._task = asyncio.create_task(self._run(job), name=f"review-retrain-{job.id}")
        return job

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- the job ---------------------------------------------------------------------------
    async def _run(self, job: Job) -> None:
        log.info("review.retrain.started", job=job.id, by=job.started_by)
        snapshot = self._work / f"snapshot-{job.id}"
        try:
            await self._steps(job, snapshot)
            job.state = JobState.SUCCEEDED
            job.step = "done"
            job.say("finished")
        except asyncio.CancelledError:
            job.state, job.error = JobState.FAILED, "cancelled: the service stopped"
            raise
        except JobFailed as exc:
            job.state, job.error = JobState.FAILED, str(exc)
            job.say(f"failed: {exc}")
        except Exception as exc:
            log.exception("review.retrain.error", job=job.id)
            job.state, job.error = JobState.FAILED, f"{type(exc).__name__}: {exc}"
            job.say(f"failed: {job.error}")
        finally:
            job.finished_at = datetime.now(UTC)
            shutil.rmtree(snapshot, ignore_errors=True)
            log.info(
                "review.retrain.finished",
                job=job.id,
                state=job.state.value,
                error=job.error,
                **{f"{k}_s": v for k, v in job.seconds.items()},
            )

    async def _timed(self, job: Job, step: str, fn: Callable[[], T]) -> T:
        job.step = step
        started = time.monotonic()
        try:
            return await in_thread(fn)
        finally:
            job.seconds[step] = round(time.monotonic() - started, 1)

    async def _steps(self, job: Job, snapshot: Path) -> None:
        settings = self._settings
        project = settings.rasa_project
        job.step = "snapshot"
        await in_thread(lambda: self._snapshot(project, snapshot))
        snap = settings.model_copy(
            update={"rasa": settings.rasa.model_copy(update={"project_dir": snapshot})}
        )
        job.say(f"copied {project} for training")

        job.say("checking the training data (receptionist nlu validate)…")
        findings = await self._timed(
            job, "validate", lambda: validate_project(snapshot, settings=snap)
        )
        errors = [f for f in findings if f.level == "error"]
        for f in findings:
            job.say(f"{f.level}: {str(f).replace(str(snapshot), str(project))}")
        if errors:
            raise JobFailed(f"the training data has {len(errors)} error(s); see the lines above")
        job.say(f"{len(findings)} warning(s), no errors")

        urls = settings.rasa.urls
        loaded = await self._loaded_model(urls[0])
        job.step = "before"
        job.before = await self._scores(job, urls[0], loaded)

        st = await in_thread(lambda: model_status(snap))
        job.step = "train"
        if st.exists:
            job.say(f"a model for this data exists already: {st.path.name}")
        else:
            job.say(f"training {st.path.name} (a few minutes)…")
        model = await self._train(job, snap)
        job.model = model.name

        job.step = "reload"
        started = time.monotonic()
        await self._reload(job, urls, model)
        job.seconds["reload"] = round(time.monotonic() - started, 1)

        job.step = "after"
        job.after = await self._scores(job, urls[0], model.name)

    @staticmethod
    def _snapshot(project: Path, snapshot: Path) -> None:
        shutil.rmtree(snapshot, ignore_errors=True)
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(
            project, snapshot, ignore=shutil.ignore_patterns("__pycache__", ".rasa", "models")
        )

    async def _train(self, job: Job, snap: Settings) -> Path:
        """``ensure_model`` in a thread; the lines of its log become progress lines."""
        logfile = snap.data_path / "rasa" / "train.log"
        logfile.unlink(missing_ok=True)  # the previous run's; ensure_model writes it anew
        started = time.monotonic()
        task = asyncio.ensure_future(in_thread(lambda: ensure_model(snap, quiet=True)))
        pos = 0
        partial = ""
        last = ""
        while True:
            done, _ = await asyncio.wait({task}, timeout=1.0)
            if logfile.exists():
                if logfile.stat().st_size < pos:
                    pos = 0
                with logfile.open("rb") as fh:
                    fh.seek(pos)
                    chunk = fh.read()
                    pos += len(chunk)
                text = partial + chunk.decode(errors="replace")
                pieces = re.split(r"[\r\n]", text)
                partial = pieces.pop()
                for piece in pieces:
                    line = ANSI.sub("", piece).strip()
                    if line and line != last and _worth_showing(line):
                        last = line
                        job.say(line[:300])
            if done:
                break
        job.seconds["train"] = round(time.monotonic() - started, 1)
        model = task.result()
        job.say(f"model ready: {model.name} ({job.seconds['train']:.0f}s)")
        return model

    async def _loaded_model(self, url: str) -> str:
        token = self._settings.rasa_token()
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{url}/status", params={"token": token}, timeout=aiohttp.ClientTimeout(total=10)
            ) as resp,
        ):
            if resp.status != 200:
                raise JobFailed(f"Rasa at {url} answered /status with HTTP {resp.status}")
            data = await resp.json(content_type=None)
        name = Path(str(data.get("model_file") or "")).name
        if not name:
            raise JobFailed(f"Rasa at {url} has no model loaded")
        return name

    async def _scores(self, job: Job, url: str, model: str) -> dict[str, Any] | None:
        """Held-out scores of ``model`` (loaded at ``url``): cached per model file."""
        if not self._test_file.is_file():
            job.say(f"no held-out test file at {self._test_file}; no scores")
            return None
        cache_file = self._work / "scores.json"
        key = f"{model}:{self._test_file.stat().st_mtime_ns}"
        cache: dict[str, Any] = {}
        if cache_file.exists():
            try:
                cache = json.loads(cache_file.read_text())
            except ValueError:
                cache = {}
        if key in cache:
            job.say(f"held-out scores of {model} (cached): {cache[key]['summary']}")
            return dict(cache[key])
        examples = read_examples(self._test_file)
        job.say(f"scoring {model} on {len(examples)} held-out examples…")
        token = self._settings.rasa_token()
        started = time.monotonic()
        predictions = await in_thread(lambda: predict(examples, url, token))
        job.seconds[job.step] = round(time.monotonic() - started, 1)
        scores = scores_of(evaluate(predictions), model)
        job.say(scores["summary"])
        cache[key] = scores
        self._work.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps(cache, indent=1))
        return scores

    async def _reload(self, job: Job, urls: list[str], model: Path) -> None:
        """``PUT /model`` on each Rasa server; each swaps its model without a restart."""
        token = self._settings.rasa_token()
        async with aiohttp.ClientSession() as http:
            for url in urls:
                job.say(f"loading {model.name} into {url}…")
                started = time.monotonic()
                async with http.put(
                    f"{url}/model",
                    params={"token": token},
                    json={"model_file": str(model)},
                    timeout=aiohttp.ClientTimeout(total=RELOAD_TIMEOUT_S),
                ) as resp:
                    if resp.status >= 300:
                        body = (await resp.text())[:300]
                        raise JobFailed(f"{url} refused the model (HTTP {resp.status}): {body}")
                loaded = await self._loaded_model(url)
                if loaded != model.name:
                    raise JobFailed(f"{url} still serves {loaded} after the reload")
                job.reloaded.append(url)
                job.say(f"{url} serves {loaded} ({time.monotonic() - started:.1f}s)")


def _worth_showing(line: str) -> bool:
    """Rasa's training log without its warnings' noise."""
    low = line.lower()
    return not (
        low.startswith(("warning", "/", "  "))
        or "deprecat" in low
        or "userwarning" in low
        or "tensorflow" in low
    )
