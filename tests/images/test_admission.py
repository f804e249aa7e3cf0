"""The decode budget's semaphore: bytes shared first come first served, a bounded wait, nothing leaked when a
waiter gives up (the server-level proof is tests/security/test_decode_memory.py)."""

from __future__ import annotations

import asyncio

import pytest

from consultcam.images.admission import MemoryBudget


async def test_waiters_are_admitted_in_order_as_bytes_come_free():
    budget = MemoryBudget(100)
    await budget.acquire(60)
    admitted: list[str] = []

    async def take(name: str, amount: int) -> None:
        await budget.acquire(amount)
        admitted.append(name)

    big = asyncio.create_task(take("big", 70))
    await asyncio.sleep(0)
    small = asyncio.create_task(take("small", 10))  # would fit now, but stands behind "big"
    await asyncio.sleep(0.01)
    assert admitted == []
    budget.release(60)
    await asyncio.gather(big, small)
    assert admitted == ["big", "small"]
    assert budget.in_use == 80


async def test_a_wait_that_times_out_leaves_the_line_and_lets_the_next_in():
    budget = MemoryBudget(100)
    await budget.acquire(50)
    blocked = asyncio.create_task(budget.acquire(80, timeout=0.05))
    await asyncio.sleep(0)
    behind = asyncio.create_task(budget.acquire(40))
    with pytest.raises(TimeoutError):
        await blocked
    await asyncio.wait_for(behind, 1)  # it fitted all along; only the one ahead held it back
    assert budget.in_use == 90


async def test_a_cancelled_waiter_takes_nothing_with_it():
    budget = MemoryBudget(100)
    await budget.acquire(100)
    waiter = asyncio.create_task(budget.acquire(30))
    await asyncio.sleep(0)
    budget.release(100)  # grants the waiter
    waiter.cancel()  # ... which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert budget.in_use == 0


async def test_amounts_outside_the_budget_are_refused():
    budget = MemoryBudget(100)
    for amount in (0, 101):
        with pytest.raises(ValueError, match="of a 100-byte budget"):
            await budget.acquire(amount)
