"""The runtime: settings plus one adapter per port, built from the settings' URLs and shared by the web
app, the job queue and the CLI."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from taskiq import AsyncBroker

from consultcam.commits.connectors.base import Connector
from consultcam.commits.connectors.registry import connector_from_url
from consultcam.config import Settings
from consultcam.db import UnitOfWork, create_engine, create_sessionmaker, unit_of_work
from consultcam.events.bus import EventBus, InProcessEventBus
from consultcam.files import PRIVATE_DIR, tighten
from consultcam.storage.store import ObjectStore, create_store

#: Redis connections per process (event reads are short; the Pub/Sub listener holds one).
REDIS_CONNECTIONS = 64


class Unreachable(RuntimeError):
    """A service the settings point at does not answer."""


@dataclass
class Runtime:
    """Everything a request or a job needs besides its own input."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    store: ObjectStore
    bus: EventBus
    connector: Connector
    broker: AsyncBroker
    redis: Redis | None = None

    @classmethod
    def create(cls, settings: Settings) -> Runtime:
        """Build the adapters (no connection is made yet; an existing DATA_DIR is narrowed to 0700, see
        consultcam/files.py). Raises ValueError with the setting to fix when a URL is unsupported, OSError
        when a folder the settings name cannot be made."""
        from consultcam import terminology
        from consultcam.kit.jobs import create_broker

        # DATA_DIR holds the database, secrets and photos: made 0700 by whichever file comes first, and
        # narrowed to 0700 when an older install left it open. (Not made here: production may not use it.)
        tighten(settings.data_dir, PRIVATE_DIR)
        terminology.use(settings.terminology)  # the practice's body sites, for requests and commits alike
        engine = create_engine(settings.resolved_database_url)
        redis = None
        if settings.redis_url:
            # A blocking pool: when every connection is busy (hundreds of streams woken at once) a caller
            # waits its turn instead of failing with "Too many connections".
            pool = BlockingConnectionPool.from_url(
                settings.redis_url, max_connections=REDIS_CONNECTIONS, timeout=20, health_check_interval=30
            )
            redis = Redis(connection_pool=pool)
        bus: EventBus
        if redis is not None:
            from consultcam.events.redis_bus import RedisEventBus

            bus = RedisEventBus(
                redis, prefix=settings.redis_prefix, ttl_seconds=(settings.retention_hours + 2) * 3600
            )
        else:
            bus = InProcessEventBus()
        return cls(
            settings=settings,
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
            store=create_store(
                settings.resolved_storage_url,
                secret_key=settings.secret_key,
                s3_endpoint_url=settings.s3_endpoint_url,
                s3_sse_kms_key_id=settings.s3_sse_kms_key_id,
            ),
            bus=bus,
            connector=connector_from_url(settings.emr_url, settings),
            broker=create_broker(settings.redis_url, prefix=settings.redis_prefix),
            redis=redis,
        )

    def unit_of_work(self, *, writes: bool = True):  # type: ignore[no-untyped-def]
        """`async with runtime.unit_of_work() as uow:` one transaction (see `db.unit_of_work`)."""
        return unit_of_work(self.sessionmaker, writes=writes)

    async def preflight(self, timeout: float = 5.0) -> None:
        """Check that the database and Redis answer, so a process refuses to start rather than fail later.

        Raises `Unreachable` naming the setting to check.
        """
        probes: list[tuple[str, Any]] = [("database (CONSULTCAM_DATABASE_URL)", self._select_one())]
        if self.redis is not None:
            probes.append(("Redis (CONSULTCAM_REDIS_URL)", self.redis.ping()))
        for name, probe in probes:
            try:
                await asyncio.wait_for(probe, timeout)
            except Exception as exc:
                raise Unreachable(f"cannot reach the {name}: {type(exc).__name__}: {exc}") from exc

    async def _select_one(self) -> None:
        from sqlalchemy import text

        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.bus.close()
        await self.store.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()


__all__ = ["Runtime", "UnitOfWork", "Unreachable"]
