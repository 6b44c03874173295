"""How many image decodes and inferences run at once: a bound on the server's memory and CPU.

Each request's decode and model run happen in the thread pool while holding a slot of
`WorkLimiter`; a request that finds every slot taken waits up to `wait_s` seconds, then gets
503 JSON with a Retry-After header (`ServerBusy`), instead of the server growing without bound.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi.concurrency import run_in_threadpool

from cnnlab.errors import ConfigError

T = TypeVar("T")
BUSY_WAIT_S = 5.0  # a burst of page strokes queues this long before being told to retry
RETRY_AFTER_S = 1


def default_in_flight() -> int:
    """Two per core (a request also waits on I/O), at most 8 (each holds an image in memory)."""
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


class ServerBusy(Exception):
    """Every work slot stayed taken for the whole wait: answer 503 and ask to retry."""

    def __init__(self, limit: int, wait_s: float):
        super().__init__(
            f"server busy: {limit} images already being processed and none finished within "
            f"{wait_s:g} s; retry in a moment"
        )


class WorkLimiter:
    """At most `limit` calls of `run` at once; the others wait up to `wait_s` seconds.

    Args:
        limit: the most calls in flight (>= 1).
        wait_s: how long a call waits for a slot before `ServerBusy` (>= 0).

    Raises:
        ConfigError: a limit below 1 or a negative wait.
    """

    def __init__(self, limit: int, wait_s: float = BUSY_WAIT_S):
        if limit < 1 or wait_s < 0:
            raise ConfigError(f"work limit must be >= 1 and wait >= 0 s, not {limit} and {wait_s}")
        self.limit, self.wait_s = limit, wait_s
        # one semaphore per event loop: asyncio primitives belong to the loop that waits on them
        self._slots: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in the thread pool once a slot is free; `ServerBusy` if none frees up."""
        loop = asyncio.get_running_loop()
        slots = self._slots.setdefault(loop, asyncio.Semaphore(self.limit))
        try:
            async with asyncio.timeout(self.wait_s):
                await slots.acquire()
        except TimeoutError:
            raise ServerBusy(self.limit, self.wait_s) from None
        try:
            return await run_in_threadpool(fn, *args)
        finally:
            slots.release()
