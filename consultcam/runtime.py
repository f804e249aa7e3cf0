"""The runtime: settings plus one adapter per port, built from the settings' URLs and shared by the web
app, the job queue and the CLI."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from consultcam.commits.connectors.base import Connector, connector_from_url
from consultcam.config import Settings
from consultcam.db import UnitOfWork, create_engine, create_sessionmaker, unit_of_work
from consultcam.events.bus import EventBus, create_bus
from consultcam.storage.store import ObjectStore, create_store


@dataclass
class Runtime:
    """Everything a request or a job needs besides its own input."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    store: ObjectStore
    bus: EventBus
    connector: Connector

    @classmethod
    def create(cls, settings: Settings) -> Runtime:
        """Build the adapters. Raises ValueError with the setting to fix when a URL is unsupported."""
        engine = create_engine(settings.resolved_database_url)
        return cls(
            settings=settings,
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
            store=create_store(settings.resolved_storage_url, secret_key=settings.secret_key),
            bus=create_bus(settings.redis_url),
            connector=connector_from_url(settings.emr_url, data_dir=settings.data_dir),
        )

    def unit_of_work(self, *, writes: bool = True):  # type: ignore[no-untyped-def]
        """`async with runtime.unit_of_work() as uow:` one transaction (see `db.unit_of_work`)."""
        return unit_of_work(self.sessionmaker, writes=writes)

    async def close(self) -> None:
        await self.bus.close()
        await self.engine.dispose()


__all__ = ["Runtime", "UnitOfWork"]
