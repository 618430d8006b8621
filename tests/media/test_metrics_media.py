"""``/metrics`` of the media server after one short Twilio-format call (real Vosk or
PocketSphinx, Piper, bot service and Rasa): the voice latency histograms have samples and the
call is no longer counted as active once it has ended."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from media_server.caller import TwilioCaller
from media_server.tts.piper_engine import PiperSynthesizer
from tests.conftest import bot_for
from tests.media.callers import speech
from tests.procs import BotService, MediaService, RasaStack, media_for, serving

Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        v for lbl, v in samples.get(name, []) if all(lbl.get(k) == x for k, x in labels.items())
    )


async def scrape_until(url: str, done: Callable[[Samples], bool], what: str) -> Samples:
    deadline = time.monotonic() + 10
    while not done(samples := await asyncio.to_thread(scrape, url)):
        assert time.monotonic() < deadline, f"{what}: not in /metrics after 10 s"
        await asyncio.sleep(0.1)
    return samples


@pytest.fixture(scope="module")
def metrics_bot(rasa: RasaStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotService]:
    yield from serving(bot_for(rasa, tmp_path_factory.mktemp("metrics-bot")))


@pytest.fixture(scope="module")
def media(
    metrics_bot: BotService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MediaService]:
    yield from media_for(metrics_bot, tmp_path_factory.mktemp("metrics-media"))


async def test_one_call_fills_the_voice_metrics(
    media: MediaService, voice: PiperSynthesizer
) -> None:
    question = speech(voice, "What are your opening hours?", 8000)
    active = "receptionist_media_calls_active"
    async with TwilioCaller(media.ws + "/media/twilio") as caller:
        await caller.wait_speech(0.0, timeout=30)  # the greeting
        await caller.wait_quiet(0.5)
        during = await asyncio.to_thread(scrape, media.url)
        assert total(during, active, transport="twilio") == 1
        _, spoken_end = await caller.say(question)
        await caller.wait_speech(spoken_end, timeout=30)
        await caller.wait_quiet(0.8)
        await caller.press("5")
        await scrape_until(
            media.url, lambda m: total(m, "receptionist_media_dtmf_digits_total") == 1, "key press"
        )
    after = await scrape_until(media.url, lambda m: total(m, active) == 0, "calls ended")
    assert total(after, "receptionist_media_calls_total", transport="twilio") == 1
    assert total(after, "receptionist_media_dtmf_digits_total", source="transport") == 1
    assert total(after, "receptionist_media_asr_latency_seconds_count") >= 1
    assert total(after, "receptionist_media_bot_round_trip_seconds_count") >= 1
    assert total(after, "receptionist_media_reply_latency_seconds_count") >= 1
    # the greeting and the answer were both spoken
    assert total(after, "receptionist_media_tts_first_audio_seconds_count") >= 2
    spoken = total(after, "receptionist_media_tts_cache_hits_total") + total(
        after, "receptionist_media_tts_cache_misses_total"
    )
    assert spoken >= 2
    assert total(after, "receptionist_media_turns_total") >= 1
    assert total(after, "receptionist_media_asr_audio_seconds_total") > 1
    assert 0 < total(after, "receptionist_media_real_time_factor", engine="asr") < 5
    # a histogram's buckets are cumulative: the +Inf bucket holds every observation
    assert total(after, "receptionist_media_reply_latency_seconds_bucket", le="+Inf") == total(
        after, "receptionist_media_reply_latency_seconds_count"
    )
