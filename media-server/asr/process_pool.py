"""Speech recognition in worker processes, for engines that hold the GIL while decoding.

PocketSphinx holds the GIL for the whole of ``process_raw``: decoding one call in a thread
stalls every other call's decoding and the event loop (RTP pacing, playout). Here each
worker process loads the recognizer once; a stream is pinned to one worker (the one with
the fewest open streams), which holds that stream's decoder. The media server's ASR threads
send audio over the worker's pipe and block on the answer with the GIL released, so the
media server never decodes itself.

Wire format (pickled tuples, small): requests ``("open", sid, phrases | None)``,
``("accept", sid, pcm)``, ``("finish", sid)``, ``("close", sid)``, ``("vocab", word)``,
``("exit",)``; answers ``("ok", value)`` or ``("err", type name, message)``; a transcript
travels as a plain tuple (:func:`_encode`). A worker answers one request at a time, so one
lock per worker pipe keeps requests and answers paired.

Failure: a worker that dies (or stops answering for ``REPLY_TIMEOUT_S``) fails only the
streams pinned to it, with :class:`AsrWorkerError` (a :class:`RecognizerError`), and is
replaced by a fresh process at once. Workers start with the ``spawn`` method (never fork:
the media server has threads and an event loop), ignore SIGINT (the media server shuts them
down itself, after its calls have hung up), and exit when their pipe closes, so they do not
outlive the media server even when it is killed.
"""

from __future__ import annotations

import importlib
import itertools
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext, SpawnContext
from typing import Any, Literal

import psutil
import structlog

from media_server.asr.base import RecognizerError, Transcript, Word
from media_server.models_catalogue import ModelError

# Engines whose decoder holds the GIL: with ``media.asr_processes = "auto"`` they decode in
# worker processes. Vosk (Kaldi) releases it and decodes in the media server's threads.
GIL_HOLDING_ENGINES = frozenset({"pocketsphinx"})
SPHINX_FACTORY = "media_server.asr.sphinx_engine:SphinxRecognizer"
START_TIMEOUT_S = 60.0  # a worker loads its model in ~1 s
REPLY_TIMEOUT_S = 30.0  # one request decodes at most a few seconds of audio
STOP_TIMEOUT_S = 2.0

_EncodedWord = tuple[str, float, float, float]
_Encoded = tuple[str, bool, float | None, tuple[_EncodedWord, ...], str, str, str | None]


def _log() -> Any:
    return structlog.get_logger("media.asr")


def processes_for(setting: int | Literal["auto"], engine: str) -> int:
    """How many worker processes ``engine`` gets under ``media.asr_processes``; 0: decode
    in threads of the media server itself."""
    if engine not in GIL_HOLDING_ENGINES:
        return 0
    if setting == "auto":
        return os.cpu_count() or 1
    return setting


class AsrWorkerError(RecognizerError):
    """The worker process holding a stream's decoder died or stopped answering."""


def _encode(t: Transcript | None) -> _Encoded | None:
    if t is None:
        return None
    words = tuple((w.text, w.start_s, w.end_s, w.confidence) for w in t.words)
    return (t.text, t.is_final, t.confidence, words, t.engine, t.language, t.corrected_from)


def _decode(v: _Encoded | None) -> Transcript | None:
    if v is None:
        return None
    text, is_final, confidence, words, engine, language, corrected_from = v
    return Transcript(
        text=text,
        is_final=is_final,
        confidence=confidence,
        words=tuple(Word(*w) for w in words),
        engine=engine,
        language=language,
        corrected_from=corrected_from,
    )


_REMOTE_ERRORS: dict[str, type[Exception]] = {
    "ValueError": ValueError,
    "RuntimeError": RuntimeError,
    "ModelError": ModelError,
}


# -- the worker process -------------------------------------------------------------------
def _load_factory(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _worker_main(conn: Connection, factory: str, kwargs: dict[str, Any] | None = None) -> None:
    """A worker process: load the recognizer (``factory(**kwargs)``), then answer requests
    until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the media server stops its workers itself
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "event"]),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    structlog.contextvars.bind_contextvars(asr_worker=os.getpid())
    try:
        recognizer = _load_factory(factory)(**(kwargs or {}))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    streams: dict[int, Any] = {}
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return  # the media server is gone
            op = msg[0]
            if op == "exit":
                return
            try:
                value: Any = None
                if op == "accept":
                    value = _encode(streams[msg[1]].accept(msg[2]))
                elif op == "finish":
                    value = _encode(streams[msg[1]].finish())
                elif op == "open":
                    streams[msg[1]] = recognizer.open_stream(msg[2])
                elif op == "close":
                    stream = streams.pop(msg[1], None)
                    if stream is not None:
                        stream.close()
                elif op == "vocab":
                    value = bool(recognizer.in_vocabulary(msg[1]))
                else:
                    raise ValueError(f"unknown request {op!r}")
                reply: tuple[Any, ...] = ("ok", value)
            except Exception as exc:  # noqa: BLE001 - sent to the parent, which raises it
                reply = ("err", type(exc).__name__, str(exc))
            try:
                conn.send(reply)
            except OSError:
                return
    finally:
        for stream in streams.values():
            stream.close()


# -- the media server's side ----------------------------------------------------------------
class _Worker:
    """One worker process and its pipe. ``call`` is thread-safe (one request at a time)."""

    def __init__(self, pool: AsrProcessPool, slot: int) -> None:
        self.pool = pool
        self.slot = slot
        self.streams = 0  # open streams pinned here
        self.dead: str | None = None  # why it is unusable
        self.ready = False
        self.lock = threading.Lock()
        self.started = time.perf_counter()
        conn, child = pool.ctx.Pipe(duplex=True)
        self.conn = conn
        self.process = pool.ctx.Process(
            target=_worker_main,
            args=(child, pool.factory, pool.factory_kwargs),
            name=f"asr-worker-{slot}",
            daemon=True,
        )
        self.process.start()
        child.close()  # the worker's end: its death then reads as EOF here
        self.pid: int = self.process.pid or 0
        _log().info("media.asr.worker_started", pid=self.pid, slot=slot)

    def _wait_ready(self) -> None:
        """Under ``lock``: the worker's first message says whether its model loaded."""
        if self.ready:
            return
        if not self.conn.poll(START_TIMEOUT_S):
            self._died(f"did not load its model within {START_TIMEOUT_S:.0f} s", kill=True)
            raise AsrWorkerError(f"speech recognition worker {self.pid}: {self.dead}")
        status, detail = self.conn.recv()
        if status != "ready":
            self._died(f"could not load the recognizer: {detail}", replace=False)
            raise ModelError(f"speech recognition worker {self.pid} {self.dead}")
        self.ready = True
        _log().info(
            "media.asr.worker_ready",
            pid=self.pid,
            slot=self.slot,
            rss_mb=self.rss_mb(),
            latency_ms=round((time.perf_counter() - self.started) * 1000),
        )

    def wait_ready(self) -> None:
        with self.lock:
            if self.dead is not None:
                raise AsrWorkerError(f"speech recognition worker {self.pid} {self.dead}")
            try:
                self._wait_ready()
            except (EOFError, OSError) as exc:
                self._died(f"exited while loading its model ({exc!r})", replace=False)
                raise ModelError(f"speech recognition worker {self.pid} {self.dead}") from exc

    def call(self, *request: Any) -> Any:
        with self.lock:
            if self.dead is not None:
                raise AsrWorkerError(
                    f"speech recognition worker {self.pid} {self.dead}; "
                    "the audio of its calls was lost"
                )
            try:
                self._wait_ready()
                self.conn.send(request)
                if not self.conn.poll(REPLY_TIMEOUT_S):
                    self._died(f"did not answer within {REPLY_TIMEOUT_S:.0f} s", kill=True)
                    raise AsrWorkerError(f"speech recognition worker {self.pid} {self.dead}")
                reply = self.conn.recv()
            except (EOFError, OSError) as exc:
                self._died(self._exit_reason(exc))
                raise AsrWorkerError(
                    f"speech recognition worker {self.pid} {self.dead}; "
                    "the audio of its calls was lost"
                ) from exc
        if reply[0] == "ok":
            return reply[1]
        _, kind, message = reply
        raise _REMOTE_ERRORS.get(kind, RecognizerError)(
            message if kind in _REMOTE_ERRORS else f"{kind}: {message}"
        )

    def check(self) -> None:
        """Mark the worker dead (and have it replaced) if its process has exited."""
        with self.lock:
            if self.dead is None and not self.process.is_alive():
                self._died(self._exit_reason(None))

    def _exit_reason(self, exc: BaseException | None) -> str:
        self.process.join(1.0)
        code = self.process.exitcode
        if code is None:
            return f"closed its pipe ({exc!r})" if exc else "stopped answering"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"died ({name})"
        return f"exited with status {code}"

    def _died(self, reason: str, *, kill: bool = False, replace: bool = True) -> None:
        """Under ``lock``: mark the worker unusable, reap it, and have the pool replace it."""
        self.dead = reason
        if kill and self.process.is_alive():
            self.process.kill()
        self.process.join(1.0)
        # stopped with the media server while answering: expected, not an error
        emit = _log().info if self.pool.closed else _log().error
        emit(
            "media.asr.worker_died",
            pid=self.pid,
            slot=self.slot,
            reason=reason,
            streams_lost=self.streams,
        )
        if replace:
            self.pool._replace(self)

    def stop(self) -> None:
        """Ask the worker to exit, then make sure it did; close the pipe."""
        if self.lock.acquire(timeout=0.1):
            try:
                if self.dead is None and self.process.is_alive():
                    self.conn.send(("exit",))
            except OSError:
                pass  # already gone: the join below reaps it
            finally:
                self.lock.release()
        self.process.join(STOP_TIMEOUT_S)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(STOP_TIMEOUT_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        if self.dead is None:
            self.dead = "was stopped (the media server is shutting down)"
        # a thread blocked on the pipe saw EOF when the process ended; close it after that
        if self.lock.acquire(timeout=STOP_TIMEOUT_S):
            try:
                self.conn.close()
            finally:
                self.lock.release()

    def rss_mb(self) -> float | None:
        try:
            rss: int = psutil.Process(self.pid).memory_info().rss
        except psutil.Error:
            return None
        return round(rss / 2**20, 1)


class AsrProcessPool:
    """``size`` worker processes, each with its own copy of the recognizer that
    ``factory`` (``"module:callable"``) builds, called with ``factory_kwargs`` (picklable:
    they travel to the worker, e.g. ``{"profile": "fast"}``). Starting is quick; the
    workers load their models in parallel (``wait_ready`` waits for them)."""

    def __init__(
        self,
        size: int,
        *,
        factory: str = SPHINX_FACTORY,
        factory_kwargs: Mapping[str, Any] | None = None,
        context: Literal["spawn", "forkserver"] = "spawn",
    ) -> None:
        if size < 1:
            raise ValueError(f"a process pool needs at least one worker, got {size}")
        # never "fork": the media server has threads and an event loop
        self.ctx: SpawnContext | ForkServerContext = (
            multiprocessing.get_context("spawn")
            if context == "spawn"
            else multiprocessing.get_context("forkserver")
        )
        self.factory = factory
        self.factory_kwargs: dict[str, Any] = dict(factory_kwargs or {})
        self._lock = threading.Lock()
        self._closed = False
        self._ids = itertools.count(1)
        self._workers = [_Worker(self, slot) for slot in range(size)]

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def size(self) -> int:
        return len(self._workers)

    def pids(self) -> list[int]:
        with self._lock:
            return [w.pid for w in self._workers]

    def wait_ready(self) -> None:
        """Block until every worker has loaded its model; ModelError when none could."""
        with self._lock:
            workers = list(self._workers)
        errors: list[Exception] = []
        for w in workers:
            try:
                w.wait_ready()
            except (ModelError, RecognizerError) as exc:
                errors.append(exc)
        if len(errors) == len(workers):
            raise ModelError(f"no speech recognition worker could start: {errors[0]}")

    def memory(self) -> dict[int, float | None]:
        """Resident memory (MB) of each worker process, by pid."""
        with self._lock:
            workers = list(self._workers)
        return {w.pid: w.rss_mb() for w in workers}

    def _replace(self, dead: _Worker) -> None:
        with self._lock:
            if self._closed or self._workers[dead.slot] is not dead:
                return
            self._workers[dead.slot] = _Worker(self, dead.slot)

    def _pick(self) -> _Worker:
        for w in list(self._workers):  # notice workers that died idle; replace them
            if w.dead is None and not w.process.is_alive():
                w.check()
        with self._lock:
            if self._closed:
                raise RecognizerError("the speech recognition worker pool is closed")
            alive = [w for w in self._workers if w.dead is None]
            if not alive:
                reasons = "; ".join(f"{w.pid} {w.dead}" for w in self._workers)
                raise RecognizerError(f"no speech recognition worker is running: {reasons}")
            worker = min(alive, key=lambda w: w.streams)
            worker.streams += 1
            return worker

    def _release(self, worker: _Worker) -> None:
        with self._lock:
            worker.streams -= 1

    def open_stream(self, phrases: Sequence[str] | None = None) -> PooledStream:
        """A stream on the worker with the fewest open streams. A worker found dead on the
        way is replaced and the next one tried: nothing has been decoded yet."""
        for attempt in range(self.size + 1):
            worker = self._pick()
            sid = next(self._ids)
            try:
                worker.call("open", sid, tuple(phrases) if phrases else None)
            except AsrWorkerError:
                self._release(worker)
                if attempt == self.size:
                    raise
                continue
            except BaseException:
                self._release(worker)
                raise
            return PooledStream(self, worker, sid)
        raise AssertionError("unreachable")

    def in_vocabulary(self, word: str) -> bool:
        worker = self._pick()
        try:
            return bool(worker.call("vocab", word))
        finally:
            self._release(worker)

    def close(self) -> None:
        """Stop every worker (idempotent). Their open streams fail with AsrWorkerError."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = list(self._workers)
        for w in workers:
            w.stop()
        _log().info("media.asr.pool_closed", workers=len(workers))


class PooledStream:
    """A :class:`~media_server.asr.base.RecognizerStream` whose decoder lives in a worker."""

    def __init__(self, pool: AsrProcessPool, worker: _Worker, sid: int) -> None:
        self._pool = pool
        self._worker = worker
        self._sid = sid
        self._closed = False

    @property
    def worker_pid(self) -> int:
        return self._worker.pid

    def _check(self) -> None:
        if self._closed:
            raise RuntimeError("the recognizer stream is closed")

    def accept(self, pcm: bytes) -> Transcript | None:
        self._check()
        if len(pcm) % 2:
            raise ValueError(f"PCM must be 16-bit samples (even byte count), got {len(pcm)}")
        if not pcm:
            return None
        return _decode(self._worker.call("accept", self._sid, bytes(pcm)))

    def finish(self) -> Transcript:
        self._check()
        final = _decode(self._worker.call("finish", self._sid))
        if final is None:
            raise RecognizerError("the worker returned no final transcript")
        return final

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._worker.dead is None:
                self._worker.call("close", self._sid)
        except AsrWorkerError:
            pass  # the decoder died with its worker (logged as media.asr.worker_died)
        finally:
            self._pool._release(self._worker)


class PooledRecognizer:
    """A recognizer whose streams decode in an :class:`AsrProcessPool`."""

    def __init__(
        self, pool: AsrProcessPool, *, engine: str, language: str, is_fallback: bool = False
    ) -> None:
        self.pool = pool
        self.engine = engine
        self.language = language
        self.is_fallback = is_fallback

    def open_stream(self, phrases: Sequence[str] | None = None) -> PooledStream:
        return self.pool.open_stream(phrases)

    def in_vocabulary(self, word: str) -> bool:
        return self.pool.in_vocabulary(word)
