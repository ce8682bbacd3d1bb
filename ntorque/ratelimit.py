"""Failed authentications, limited per client address.

Each address has a token bucket of `limit` failures that refills over
`window_s`: a burst of `limit` bad keys is answered 401, after which the
address gets 429 with Retry-After (before any key is checked) until a token
is back. Successes take no token. Only addresses that failed are tracked, at
most `max_addresses` of them (the least recently failed are forgotten first).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_ADDRESSES = 10_000


class FailureLimiter:
    def __init__(
        self,
        limit: int,
        window_s: float,
        *,
        max_addresses: int = MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.rate = limit / window_s  # tokens back per second
        self.max_addresses = max_addresses
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when

    def retry_after(self, address: str) -> int:
        """Whole seconds until address may try a key again; 0 when it may now."""
        bucket = self._buckets.get(address)
        if bucket is None:  # the usual case, and a cheap one
            return 0
        tokens = self._tokens(bucket)
        return 0 if tokens >= 1 else max(1, math.ceil((1 - tokens) / self.rate))

    def failed(self, address: str) -> None:
        """Take a token for a failed authentication from address."""
        bucket = self._buckets.pop(address, None)
        tokens = self._tokens(bucket) if bucket else float(self.limit)
        self._buckets[address] = (tokens - 1, self.clock())
        while len(self._buckets) > self.max_addresses:
            self._buckets.popitem(last=False)

    def _tokens(self, bucket: tuple[float, float]) -> float:
        tokens, when = bucket
        return min(float(self.limit), tokens + (self.clock() - when) * self.rate)
