"""The frustration score: angry messages cross the threshold, ordinary ones do not."""

from __future__ import annotations

import pytest

from bot.handoff.frustration import frustration_score

THRESHOLD = 0.6


@pytest.mark.parametrize(
    "text",
    [
        "this is useless",
        "you are STUPID",
        "I AM SICK OF THIS BOT",
        "what a waste of time!!",
        "for the last time, i want to change my booking",
        "damn it, that's not what i asked",
        "this is ridiculous?!",
        "i'm so frustrated, you don't understand",
    ],
)
def test_frustrated_messages_cross_the_threshold(text: str) -> None:
    assert frustration_score(text) >= THRESHOLD, text


@pytest.mark.parametrize(
    "text",
    [
        "what are your opening hours",
        "hello",
        "I'd like to book an appointment for tomorrow at 3",
        "is parking free?",
        "thanks, that's helpful!",
        "my order number is ABC 123",
        "I need help with my bill",
        "NHS appointment please",
        "my fuseless plug",  # no match inside other words
        "that was not terrible at all",  # one mild word stays under
    ],
)
def test_ordinary_messages_stay_under(text: str) -> None:
    assert frustration_score(text) < THRESHOLD, text


def test_score_is_clipped_and_monotone() -> None:
    calm = frustration_score("this is annoying")
    worse = frustration_score("this is annoying and useless!!")
    assert 0 < calm < worse <= 1.0
    assert frustration_score("USELESS STUPID RUBBISH GARBAGE DAMN!!!") == 1.0
