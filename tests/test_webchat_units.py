"""Token buckets and signed tokens, on known inputs."""

from __future__ import annotations

import pytest

from bot.webchat.identity import TokenError, sign, verify
from bot.webchat.ratelimit import BucketsByKey, TokenBucket


def test_bucket_burst_then_refill() -> None:
    b = TokenBucket(rate_per_min=60, burst=3, now=0.0)
    assert [b.take(now=0.0) for _ in range(4)] == [True, True, True, False]
    assert b.take(now=0.5) is False  # half a token
    assert b.take(now=1.0) is True  # one per second
    assert [b.take(now=100.0) for _ in range(4)] == [True, True, True, False]  # capped at burst


def test_buckets_by_key_are_independent_and_bounded() -> None:
    buckets = BucketsByKey(rate_per_min=60, burst=1, size=2)
    assert buckets.take("a", now=0.0) and not buckets.take("a", now=0.0)
    assert buckets.take("b", now=0.0)
    assert buckets.take("c", now=0.0)  # "a" is forgotten (least recently used)
    assert buckets.take("a", now=0.0)


def test_tokens_round_trip_and_fail_for_the_right_reason() -> None:
    token = sign({"name": "Ana", "exp": 2_000}, "s3cret")
    assert verify(token, "s3cret", now=1_000) == {"name": "Ana", "exp": 2_000}
    with pytest.raises(TokenError, match="expired"):
        verify(token, "s3cret", now=2_000)
    with pytest.raises(TokenError, match="bad signature"):
        verify(token, "other", now=1_000)
    _body, mac = token.split(".")
    with pytest.raises(TokenError, match="bad signature"):
        verify(sign({"name": "Eve", "exp": 2_000}, "x").split(".")[0] + "." + mac, "s3cret")
    for junk in ("", "a.b.c", "no-dot", "!!!.???"):
        with pytest.raises(TokenError):
            verify(junk, "s3cret")
