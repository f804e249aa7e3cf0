"""The event streams' shared re-check (`consultcam.events.endpoints.SharedChecks`): streams of one credential
on one session share a check only when it started after their batch was published, never an older one."""

from __future__ import annotations

import asyncio
import time

import pytest

from consultcam.events.endpoints import SharedChecks
from consultcam.events.streams import REVOKED, StreamEnding

KEY = ("session-1", "fingerprint-a")


class Check:
    """A re-check that counts its runs and finishes when told."""

    def __init__(self, result: StreamEnding | None = None) -> None:
        self.runs = 0
        self.release = asyncio.Event()
        self.result = result

    async def __call__(self) -> StreamEnding | None:
        self.runs += 1
        await self.release.wait()
        return self.result


async def test_streams_of_one_credential_share_a_check_that_started_after_their_events():
    checks, check = SharedChecks(), Check(REVOKED)
    published = time.time() - 1  # the batch's newest event, before any check started
    waiters = [asyncio.create_task(checks.ending(KEY, published, check)) for _ in range(5)]
    await asyncio.sleep(0)
    check.release.set()
    assert await asyncio.gather(*waiters) == [REVOKED] * 5
    assert check.runs == 1


async def test_a_check_that_started_before_the_batch_was_published_is_not_reused():
    checks, first, second = SharedChecks(), Check(), Check(REVOKED)
    older = asyncio.create_task(checks.ending(KEY, time.time() - 1, first))
    await asyncio.sleep(0)
    newer = asyncio.create_task(checks.ending(KEY, time.time() + 1, second))  # published after it started
    await asyncio.sleep(0)
    first.release.set()
    second.release.set()
    assert await older is None
    assert await newer == REVOKED  # its own check saw the revocation
    assert (first.runs, second.runs) == (1, 1)


async def test_other_credentials_and_sessions_never_share():
    checks = SharedChecks()
    runs = [Check(), Check(REVOKED), Check()]
    keys = [KEY, ("session-1", "fingerprint-b"), ("session-2", "fingerprint-a")]
    waiters = [asyncio.create_task(checks.ending(k, 0.0, c)) for k, c in zip(keys, runs, strict=True)]
    await asyncio.sleep(0)
    for check in runs:
        check.release.set()
    assert await asyncio.gather(*waiters) == [None, REVOKED, None]
    assert [c.runs for c in runs] == [1, 1, 1]


async def test_a_failed_check_fails_every_waiter_and_is_forgotten():
    checks = SharedChecks()

    async def database_down() -> StreamEnding | None:
        await asyncio.sleep(0)
        raise ConnectionError("database down")

    waiters = [asyncio.create_task(checks.ending(KEY, 0.0, database_down)) for _ in range(3)]
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    after = Check()
    after.release.set()
    assert await checks.ending(KEY, 0.0, after) is None
    assert after.runs == 1  # a new check, not the failure again


async def test_a_waiter_that_leaves_does_not_cancel_the_check_for_the_others():
    checks, check = SharedChecks(), Check(REVOKED)
    leaving = asyncio.create_task(checks.ending(KEY, 0.0, check))
    staying = asyncio.create_task(checks.ending(KEY, 0.0, check))
    await asyncio.sleep(0)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    check.release.set()
    assert await staying == REVOKED
    assert check.runs == 1
