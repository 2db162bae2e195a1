"""Requests- and tokens-per-minute limits as async token buckets."""
from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """`rate_per_minute` units refill continuously; a bucket holds at most one minute's worth."""

    def __init__(self, rate_per_minute: float):
        self.capacity = float(rate_per_minute)
        self.rate_per_s = rate_per_minute / 60.0
        self.level = self.capacity
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate_per_s)
        self.updated = now

    async def acquire(self, amount: float = 1.0) -> None:
        # A request larger than a minute's budget waits for a full bucket instead of forever.
        amount = min(amount, self.capacity)
        async with self._lock:
            while True:
                self._refill()
                if self.level >= amount:
                    self.level -= amount
                    return
                await asyncio.sleep((amount - self.level) / self.rate_per_s)
