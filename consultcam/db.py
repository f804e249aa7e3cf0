"""Database engine, migrations and the unit of work that owns each request's transaction.

Services receive an `AsyncSession` and never commit; `UnitOfWork` commits once at the end and only then
runs what was deferred to after the commit (publishing events, queueing jobs), and drops it on rollback.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

log = logging.getLogger(__name__)

AfterCommit = Callable[[], Awaitable[None]]
#: Execution option marking a transaction that will write (SQLite: BEGIN IMMEDIATE; PostgreSQL: no effect).
WRITE_OPTION = "consultcam_writes"


def create_engine(url: str) -> AsyncEngine:
    """An async engine for `url` (`sqlite+aiosqlite:///path` or `postgresql+asyncpg://…`).

    SQLite gets foreign keys on (cascading deletes), WAL and a busy timeout so a second writer waits
    instead of failing with "database is locked".
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself, below
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(connection) -> None:  # type: ignore[no-untyped-def]
            # A writing transaction takes SQLite's write lock up front: a deferred one that reads first
            # fails with SQLITE_BUSY_SNAPSHOT when another writer commits in between (WAL mode).
            immediate = connection.get_execution_options().get(WRITE_OPTION)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit (responses are built after the commit)."""
    return async_sessionmaker(engine, expire_on_commit=False)


class UnitOfWork:
    """One transaction: `session` for the work, `after_commit(fn)` for side effects that must not run on
    rollback (events, jobs). Callbacks run in order; one failing is logged and does not stop the others,
    because the data is already committed."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._after: list[AfterCommit] = []

    def after_commit(self, callback: AfterCommit) -> None:
        self._after.append(callback)

    async def run_after_commit(self) -> None:
        callbacks, self._after = self._after, []
        for callback in callbacks:
            try:
                await callback()
            except Exception:
                log.exception("after-commit callback failed")


@asynccontextmanager
async def unit_of_work(
    sessionmaker: async_sessionmaker[AsyncSession], *, writes: bool = True
) -> AsyncIterator[UnitOfWork]:
    """Open a session, yield a `UnitOfWork`, commit on success then run the after-commit callbacks;
    roll back and drop the callbacks on any exception. `writes=False` for read-only work."""
    async with sessionmaker() as session:
        uow = UnitOfWork(session)
        if writes:
            await session.connection(execution_options={WRITE_OPTION: True})
        try:
            yield uow
        except BaseException:
            await session.rollback()
            raise
        await session.commit()
    await uow.run_after_commit()


def alembic_config(url: str):  # type: ignore[no-untyped-def]
    """Alembic configuration for the packaged migrations (`consultcam/migrations`)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "consultcam:migrations")
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str) -> None:
    """Upgrade the database at `url` to the newest revision. Synchronous: call it before the event loop."""
    from alembic import command

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), "head")
