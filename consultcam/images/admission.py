"""Admission of image decodes by memory, not only by count.

A small file can decode to hundreds of megabytes (a flat 45-megapixel PNG is 150 KB on the wire and 230 MB
in memory), so counting decodes does not bound what they hold. Each decode is weighed, before it starts, by
what its header says it will cost (`normalise.inspect`), and admitted only while the process's decodes
together stay within `CONSULTCAM_DECODE_MEMORY_BUDGET_MB`. Callers queue first come, first served; a
registration waits at most `CONSULTCAM_DECODE_WAIT_SECONDS`, then gets 503 with `Retry-After`; a photo
whose decode alone is over the whole budget is refused outright (it would never be admitted).
`CONSULTCAM_DECODE_THREADS` still caps how many run at once, for the cores.
"""

from __future__ import annotations

import asyncio
import collections
import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from consultcam.config import Settings
from consultcam.errors import ConsultcamError

#: Photos decoded at once in this process. More would only contend with each other (and, for the GIL and
#: the cores, with the event loop that serves the live streams); the rest queue. See bench/README.md.
#: `CONSULTCAM_DECODE_THREADS` (0: half the cores) resizes it (`decode_threads`).
IMAGE_WORK = anyio.CapacityLimiter(max(1, (os.cpu_count() or 2) // 2))

MIB = 1024 * 1024


class DecodersBusy(ConsultcamError):
    """503: the decode budget stayed full for the whole wait. Nothing was decoded; the upload stays as it
    was, so the same registration can simply be sent again after `Retry-After` seconds."""

    status, error = 503, "DecodersBusy"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "The server is busy reading other photos. Nothing was lost: register this photo again in "
            f"{retry_after} seconds (the consultcam pages retry by themselves)."
        )
        self.headers = {"Retry-After": str(retry_after)}


class MemoryBudget:
    """An asyncio semaphore weighted in bytes: `capacity` bytes are shared by everyone holding a part.

    Waiters are served strictly first come, first served (a big request at the head holds back smaller ones
    behind it, so it is never starved). Use from one event loop thread; `acquire` and `release` are not
    thread-safe.
    """

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("a memory budget needs a positive capacity")
        self.capacity = capacity
        self.in_use = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    async def acquire(self, amount: int, *, timeout: float | None = None) -> None:
        """Take `amount` bytes (1..capacity), waiting in line for them; raises TimeoutError after `timeout`
        seconds without them (None: wait as long as it takes), ValueError for an amount out of range."""
        if not 0 < amount <= self.capacity:
            raise ValueError(f"cannot take {amount} bytes of a {self.capacity}-byte budget")
        if not self._waiters and self.in_use + amount <= self.capacity:
            self.in_use += amount
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (amount, granted)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(granted), timeout)
        except BaseException:
            if granted.done() and not granted.cancelled():
                self.release(amount)  # granted just as the wait ended: hand it on
            else:
                granted.cancel()
                self._waiters.remove(entry)
                self._wake()  # whoever stood behind this waiter may fit now
            raise

    def release(self, amount: int) -> None:
        """Give back `amount` bytes taken by `acquire`, and admit whoever now fits, in order."""
        self.in_use -= amount
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_use + self._waiters[0][0] <= self.capacity:
            amount, granted = self._waiters.popleft()
            self.in_use += amount
            granted.set_result(None)


_BUDGETS: dict[int, MemoryBudget] = {}


def budget_for(settings: Settings) -> MemoryBudget:
    """The process's decode budget of `CONSULTCAM_DECODE_MEMORY_BUDGET_MB` (one per size: a process normally
    has one; tests build apps with several)."""
    capacity = settings.decode_memory_budget_mb * MIB
    return _BUDGETS.setdefault(capacity, MemoryBudget(capacity))


def decode_threads(settings: Settings) -> anyio.CapacityLimiter:
    """IMAGE_WORK, sized by `CONSULTCAM_DECODE_THREADS` (0: half the cores, at least one)."""
    wanted = settings.decode_threads or max(1, (os.cpu_count() or 2) // 2)
    if IMAGE_WORK.total_tokens != wanted:
        IMAGE_WORK.total_tokens = wanted
    return IMAGE_WORK


@asynccontextmanager
async def decode_memory(settings: Settings, amount: int, *, wait: bool = True) -> AsyncIterator[None]:
    """Hold `amount` bytes of the decode budget for the body of the `async with`.

    `amount` over the whole budget is the caller's to refuse first (`fits`); here it is capped to the
    budget, so a caller that must go on (a commit rendering its photos) is admitted alone. `wait=True`
    waits at most `CONSULTCAM_DECODE_WAIT_SECONDS`, then raises DecodersBusy (503, `Retry-After`);
    `wait=False` is not "don't wait" but "wait as long as it takes", for work that must not fail for load.
    """
    budget = budget_for(settings)
    amount = max(1, min(amount, budget.capacity))
    timeout = settings.decode_wait_seconds if wait else None
    try:
        await budget.acquire(amount, timeout=timeout)
    except TimeoutError:
        raise DecodersBusy(retry_after=max(1, math.ceil(settings.decode_wait_seconds / 4))) from None
    try:
        yield
    finally:
        budget.release(amount)


def fits(settings: Settings, amount: int) -> bool:
    """Whether a decode of `amount` bytes can ever be admitted: at most the whole budget."""
    return amount <= settings.decode_memory_budget_mb * MIB
