"""Token buckets: ``rate_per_min`` tokens refill continuously up to ``burst``."""

from __future__ import annotations

import time
from collections import OrderedDict


class TokenBucket:
    def __init__(self, rate_per_min: float, burst: float, now: float | None = None) -> None:
        self.rate = rate_per_min / 60.0
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic() if now is None else now

    def take(self, now: float | None = None) -> bool:
        t = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (t - self.stamp) * self.rate)
        self.stamp = t
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class BucketsByKey:
    """One bucket per key (e.g. client IP), the least recently used forgotten past ``size``."""

    def __init__(self, rate_per_min: float, burst: float, size: int = 10_000) -> None:
        self._rate, self._burst, self._size = rate_per_min, burst, size
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, key: str, now: float | None = None) -> bool:
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = TokenBucket(self._rate, self._burst, now)
            if len(self._buckets) > self._size:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return b.take(now)
