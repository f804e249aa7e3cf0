"""Open streams as the bus keeps them, on both adapters (in-process, and Redis with two bus instances standing
for two web processes): the caps, `end_streams`, the events that end streams, and readers cancelled en masse.
The same rules are attacked over HTTP in tests/security/test_streams.py."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis

from consultcam.events.bus import EventBus
from consultcam.events.memory import InProcessEventBus
from consultcam.events.redis import RedisEventBus
from consultcam.events.streams import CREDENTIAL_REVOKED, SESSION_ENDED, StreamLimits, TooManyStreams
from tests.redis_server import RedisServer

SHARED_REDIS = "redis://127.0.0.1:6379/0"
LIMITS = StreamLimits(per_session=3, per_credential=2)


@pytest.fixture(params=["in-process", "redis"])
async def buses(request: pytest.FixtureRequest) -> AsyncIterator[tuple[EventBus, EventBus]]:
    """(bus of process A, bus of process B): the same bus twice in-process (one process), two instances
    with their own Redis connections on Redis."""
    if request.param == "in-process":
        bus = InProcessEventBus()
        yield bus, bus
        await bus.close()
        return
    prefix = f"cc-test-{uuid.uuid4().hex[:8]}:"
    clients = [Redis.from_url(SHARED_REDIS), Redis.from_url(SHARED_REDIS)]
    a, b = (RedisEventBus(client, prefix=prefix) for client in clients)
    yield a, b
    for bus in (a, b):
        await bus.close()
    for client in clients:
        await client.aclose()


async def eventually(predicate: Callable[[], Any], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_caps_count_every_process_and_a_released_stream_frees_its_place(buses):
    a, b = buses
    first = await a.open_stream("s", "phone-1", LIMITS)
    await b.open_stream("s", "phone-1", LIMITS)
    with pytest.raises(TooManyStreams, match="2 live-update connections") as refused:
        await a.open_stream("s", "phone-1", LIMITS)
    assert refused.value.status == 429
    await b.open_stream("s", None, LIMITS)  # a caller without a credential counts for the session only
    with pytest.raises(TooManyStreams, match="session already has 3"):
        await b.open_stream("s", "phone-2", LIMITS)
    await a.open_stream("other-session", "phone-2", LIMITS)  # other sessions are not affected

    await first.release()
    await first.release()  # idempotent
    await b.open_stream("s", "phone-1", LIMITS)


async def test_ending_a_credential_ends_its_streams_on_every_process_and_no_other(buses):
    a, b = buses
    phone = await a.open_stream("s", "phone-1", LIMITS)
    other = await a.open_stream("s", "phone-2", LIMITS)
    desktop = await a.open_stream("s", None, LIMITS)
    waiting = asyncio.create_task(a.read("s", await a.last_id("s"), timeout=30, lease=phone))
    # Process A hears end signals once its listener has subscribed (a stream opened before then re-checks
    # its authorisation at that moment instead, which also wakes its reader); ending a credential again is
    # harmless, so say it until heard.
    deadline = time.monotonic() + 10
    while phone.ending is None and time.monotonic() < deadline:
        await b.end_streams(credential_id="phone-1")
        await asyncio.sleep(0.2)
    assert await asyncio.wait_for(waiting, 2) == []  # the reader is awake
    assert phone.ending is not None
    assert phone.ending.reason == CREDENTIAL_REVOKED
    assert other.ending is None
    assert desktop.ending is None
    with pytest.raises(ValueError, match="exactly one"):
        await b.end_streams()


@pytest.mark.parametrize(
    ("type_", "data", "ended", "reason"),
    [
        ("phone.revoked", {"phoneId": "phone-1", "reason": "revoked"}, {"phone"}, CREDENTIAL_REVOKED),
        ("session.expired", {"reason": "cancelled"}, {"phone", "desktop"}, SESSION_ENDED),
        ("session.committed", {"commitId": "c", "results": []}, {"phone", "desktop"}, SESSION_ENDED),
        ("image.updated", {"image": {"id": "i"}}, set(), None),
    ],
)
async def test_events_that_withdraw_access_end_the_matching_streams(buses, type_, data, ended, reason):
    a, b = buses
    leases = {
        "phone": await a.open_stream("s", "phone-1", LIMITS),
        "desktop": await a.open_stream("s", None, LIMITS),
    }
    elsewhere = await a.open_stream("other-session", "phone-9", LIMITS)
    await b.publish("s", type_, data)
    if ended:
        await eventually(lambda: all(leases[name].ending for name in ended))
    else:
        await asyncio.sleep(0.2)
    assert {name for name, lease in leases.items() if lease.ending} == ended
    assert {lease.ending.reason for lease in leases.values() if lease.ending} <= {reason}
    assert elsewhere.ending is None


async def test_a_crashed_process_leases_lapse():
    """A process that dies holds no place for ever: its leases lapse after the lease TTL."""
    prefix = f"cc-test-{uuid.uuid4().hex[:8]}:"
    client = Redis.from_url(SHARED_REDIS)
    crashed = RedisEventBus(client, prefix=prefix, lease_ttl_seconds=0.5)
    survivor = RedisEventBus(client, prefix=prefix, lease_ttl_seconds=0.5)
    try:
        await crashed.open_stream("s", "phone-1", LIMITS)
        await crashed.open_stream("s", "phone-1", LIMITS)
        with pytest.raises(TooManyStreams):  # while it lives, its streams hold their places
            await survivor.open_stream("s", "phone-1", LIMITS)
        await crashed.close()  # gone without releasing anything
        await asyncio.sleep(0.7)
        kept = await survivor.open_stream("s", "phone-1", LIMITS)
        await asyncio.sleep(1.0)  # a live process refreshes its leases: they do not lapse
        await survivor.open_stream("s", "phone-1", LIMITS)
        with pytest.raises(TooManyStreams):
            await survivor.open_stream("s", "phone-1", LIMITS)
        await kept.release()
    finally:
        await survivor.close()
        await client.aclose()


def test_readers_cancelled_twice_while_events_flow_leave_the_in_process_bus_working():
    """What 300 phones dropping at once do to the stream endpoint: each reader sits in an anyio task group,
    as sse-starlette runs it, and is cancelled while publishes wake everyone. Before the fix the ring's
    lock was released by a reader that did not hold it (`RuntimeError: Lock is not acquired`), and
    publishes and readers then hung for good, beyond cancellation: so the scenario runs in a thread of its
    own with a deadline, and a hang fails the test instead of hanging it."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        outcome.update(loop.run_until_complete(_cancel_readers_en_masse()))
        if outcome["stuck"] == 0:  # else its tasks can be neither finished nor cancelled: left behind
            loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    assert outcome == {"errors": [], "stuck": 0}, outcome
    assert not thread.is_alive()


async def _cancel_readers_en_masse() -> dict[str, Any]:
    bus = InProcessEventBus()
    errors: list[str] = []

    async def reader(scopes: list[anyio.CancelScope]) -> None:
        async def listen() -> None:
            last = None
            while True:
                for event in await bus.read("s", last, timeout=10):
                    last = event.id
                await asyncio.sleep(0)

        try:
            async with anyio.create_task_group() as group:
                scopes.append(group.cancel_scope)
                group.start_soon(listen)
        except Exception as exc:  # what the endpoint would have logged
            errors.append(repr(exc))

    async def publish_some() -> None:
        for n in range(20):
            await bus.publish("s", "image.deleted", {"imageId": str(n)})
            await asyncio.sleep(0)

    for _round in range(5):
        scopes: list[anyio.CancelScope] = []
        readers = [asyncio.create_task(reader(scopes)) for _ in range(300)]
        await eventually(lambda: len(scopes) == 300)  # noqa: B023
        await asyncio.sleep(0.05)
        publishing = asyncio.create_task(publish_some())
        for index, scope in enumerate(scopes):
            scope.cancel()
            if index % 30 == 0:
                await asyncio.sleep(0)
        _done, stuck = await asyncio.wait([publishing, *readers], timeout=5)
        if stuck or errors:
            return {"errors": errors[:3], "stuck": len(stuck)}  # the stuck tasks cannot be cancelled
    return {"errors": errors, "stuck": 0}


async def test_after_losing_redis_every_open_stream_rechecks_its_authorisation(tmp_path: Path):
    """An end signal published while this process was not subscribed is lost: once subscribed again, every
    stream of the process re-checks its authorisation against the database before sending anything."""
    server = RedisServer(tmp_path)
    server.start()
    client = Redis.from_url(server.url)
    bus = RedisEventBus(client, prefix="cc-test:")
    try:
        lease = await bus.open_stream("s", "phone-1", LIMITS)
        await asyncio.sleep(0.5)  # subscribed by now (a stream checks once at opening anyway)
        lease.recheck = False
        server.stop()
        await asyncio.sleep(0.5)
        assert not lease.recheck
        server.start()
        await eventually(lambda: lease.recheck, timeout=15)
        assert lease.ending is None  # re-checking is not ending
    finally:
        await bus.close()
        await client.aclose()
        server.stop()
