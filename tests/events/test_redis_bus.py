"""The Redis Streams event bus against a real Redis: replay, cross-process wake-up, expiry, lost Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from consultcam.events.redis import RedisEventBus
from tests.redis_server import RedisServer

SHARED_REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(SHARED_REDIS)
    yield client
    await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"cc-test-{uuid.uuid4().hex[:8]}:"


async def test_events_replay_from_the_last_event_id(redis, prefix):
    bus = RedisEventBus(redis, prefix=prefix)
    first = await bus.publish("s1", "image.added", {"image": {"id": "a"}})
    second = await bus.publish("s1", "image.deleted", {"imageId": "a"})
    third = await bus.publish("s1", "phone.revoked", {"phoneId": "p"})

    assert [e.id for e in await bus.read("s1", None, timeout=0.1)] == [first.id, second.id, third.id]
    missed = await bus.read("s1", first.id, timeout=0.1)
    assert [(e.id, e.type, e.data) for e in missed] == [
        (second.id, "image.deleted", {"imageId": "a"}),
        (third.id, "phone.revoked", {"phoneId": "p"}),
    ]
    assert await bus.read("s1", third.id, timeout=0.05) == []
    assert await bus.last_id("s1") == third.id
    assert await bus.read("other-session", None, timeout=0.05) == []
    await bus.close()


async def test_a_reader_in_another_process_is_woken_by_a_publish(redis, prefix):
    """Two bus instances with their own connections stand for two web processes."""
    other_client = Redis.from_url(SHARED_REDIS)
    writer, reader = RedisEventBus(redis, prefix=prefix), RedisEventBus(other_client, prefix=prefix)
    waiting = asyncio.create_task(reader.read("s2", None, timeout=5))
    await asyncio.sleep(0.2)  # the reader is now blocked on its wake-up, not polling
    assert not waiting.done()
    published = await writer.publish("s2", "image.added", {"image": {"id": "x"}})
    events = await asyncio.wait_for(waiting, 2)
    assert [e.id for e in events] == [published.id]
    await reader.close()
    await writer.close()
    await other_client.aclose()


async def test_streams_expire_and_are_trimmed(redis, prefix):
    bus = RedisEventBus(redis, prefix=prefix, retain=10, ttl_seconds=120)
    for n in range(200):
        await bus.publish("s3", "image.deleted", {"imageId": str(n)})
    key = f"{prefix}events:s3"
    assert 0 < await redis.ttl(key) <= 120
    assert await redis.xlen(key) < 200  # MAXLEN ~ 10 trims (approximately, by whole nodes)
    await bus.drop("s3")
    assert not await redis.exists(key)
    with pytest.raises(ValueError, match="unknown event type"):
        await bus.publish("s3", "image.exploded", {})


async def test_an_id_from_another_bus_replays_everything(redis, prefix):
    bus = RedisEventBus(redis, prefix=prefix)
    event = await bus.publish("s4", "image.deleted", {"imageId": "1"})
    assert [e.id for e in await bus.read("s4", "17", timeout=0.05)] == [event.id]


async def test_readers_survive_a_redis_restart(tmp_path: Path, prefix):
    server = RedisServer(tmp_path)
    server.start()
    client = Redis.from_url(server.url)
    bus = RedisEventBus(client, prefix=prefix)
    try:
        await bus.publish("s5", "image.deleted", {"imageId": "before"})
        await bus.read("s5", None, timeout=0.05)  # starts the listener
        server.stop()
        with pytest.raises(Exception):  # noqa: B017,PT011 - any connection error
            await bus.check()
        server.start()
        await asyncio.sleep(1.5)  # the listener reconnects with back-off
        await bus.check()
        waiting = asyncio.create_task(bus.read("s5", None, timeout=5))
        await asyncio.sleep(0.2)
        published = await bus.publish("s5", "image.deleted", {"imageId": "after"})
        assert [e.id for e in await asyncio.wait_for(waiting, 5)] == [published.id]
    finally:
        await bus.close()
        await client.aclose()
        server.stop()
