"""The event bus for the settings: the one place that knows every `EventBus` adapter."""

from __future__ import annotations

from redis.asyncio import Redis

from consultcam.config import Settings
from consultcam.events.bus import EventBus
from consultcam.events.memory import InProcessEventBus
from consultcam.events.redis import RedisEventBus


def create_bus(settings: Settings, redis: Redis | None) -> EventBus:
    """With a Redis client (`CONSULTCAM_REDIS_URL` set): the Redis Streams bus, its streams kept for
    `RETENTION_HOURS` + 2 hours (a session's events outlive the session itself a little). Without: the
    in-process bus (embedded mode, one web process)."""
    if redis is None:
        return InProcessEventBus()
    return RedisEventBus(
        redis, prefix=settings.redis_prefix, ttl_seconds=(settings.retention_hours + 2) * 3600
    )
