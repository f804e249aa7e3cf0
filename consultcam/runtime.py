"""The runtime: the settings and one adapter per port, shared by the web app, the jobs and the CLI.

A plain record: `consultcam.bootstrap.build_runtime` builds it from the settings (the one composition root);
tests may assemble one from fakes. Each port is typed by its Protocol, so a caller depends on the port,
never on an adapter.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from consultcam.commits.connectors.base import Connector, GrantConnectors
from consultcam.config import Settings
from consultcam.db import UnitOfWork, unit_of_work
from consultcam.events.bus import EventBus
from consultcam.launch.port import MedtechLaunch
from consultcam.launch.smart_port import SmartEhr
from consultcam.storage.store import ObjectStore

if TYPE_CHECKING:  # types only: a module that needs the runtime's type need not load taskiq or redis-py
    from redis.asyncio import Redis
    from taskiq import AsyncBroker


@dataclass
class Runtime:
    """Everything a request or a job needs besides its own input: the settings, the database (`engine`,
    `sessionmaker`), the ports (`store`, `bus`, `connector`, `broker`), the Redis client (None in
    embedded mode), Medtech ALEX for launches (`medtech_launch`: None unless CONSULTCAM_EMR_URL is
    `alex+https://…`), the SMART EHRs for launches (`smart_launch`: None unless CONSULTCAM_SMART_ISSUERS
    is set) and the connector of a session opened by a SMART launch (`grant_connectors`, issue 13: None
    where no SMART launch can happen, e.g. a runtime of fakes). Satisfies `db.Transactions` through
    `unit_of_work`."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    store: ObjectStore
    bus: EventBus
    connector: Connector
    broker: AsyncBroker
    redis: Redis | None = None
    medtech_launch: MedtechLaunch | None = None
    smart_launch: SmartEhr | None = None
    grant_connectors: GrantConnectors | None = None

    def unit_of_work(self, *, writes: bool = True) -> AbstractAsyncContextManager[UnitOfWork]:
        """`async with runtime.unit_of_work() as uow:` one transaction (see `db.unit_of_work`)."""
        return unit_of_work(self.sessionmaker, writes=writes)

    async def close(self) -> None:
        """Release every port's connections, then the Redis pool and the database engine (at shutdown)."""
        await self.bus.close()
        await self.store.close()
        if self.medtech_launch is not None:
            await self.medtech_launch.close()
        if self.smart_launch is not None:
            await self.smart_launch.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()


__all__ = ["Runtime", "UnitOfWork"]
