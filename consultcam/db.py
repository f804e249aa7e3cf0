"""Database engine, migrations and the unit of work that owns each request's transaction.

Services receive an `AsyncSession` and never commit; `UnitOfWork` commits once at the end and only then
runs what was deferred to after the commit (publishing events, queueing jobs), and drops it on rollback.

Two backends, one Alembic history: SQLite (aiosqlite, the embedded default) and PostgreSQL (asyncpg, for
any number of web processes and workers). Writers are kept apart differently on each:

- SQLite: a writing unit of work begins with `BEGIN IMMEDIATE`, so it holds the whole database's write lock
  from its first statement; two writers never interleave.
- PostgreSQL (READ COMMITTED): writers run side by side, so a rule that reads then writes ("fewer than
  MAX_IMAGES", "the session is still open") first locks the capture session row
  (`sessions.service.lock_session`: `SELECT … FOR NO KEY UPDATE`; SQLite ignores the clause). Lock order:
  the capture session row first, then its images, tokens and phones, so two transactions never wait on
  each other in a cycle.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from consultcam import files

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

log = logging.getLogger(__name__)

AfterCommit = Callable[[], Awaitable[None]]
#: Execution option marking a transaction that will write (SQLite: BEGIN IMMEDIATE; PostgreSQL: no effect).
WRITE_OPTION = "consultcam_writes"

#: URL schemes accepted in CONSULTCAM_DATABASE_URL and the SQLAlchemy driver URL each one means.
_SCHEMES = {
    "postgres": "postgresql+asyncpg",  # Heroku-style, and what `psql` accepts
    "postgresql": "postgresql+asyncpg",  # libpq
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}

#: PostgreSQL connection pool, per process: `?pool_size=…&max_overflow=…&pool_timeout=…&pool_recycle=…` in
#: the URL override these. Every web process and worker holds up to pool_size + max_overflow connections,
#: so (web processes + workers) × 20 must stay under the server's max_connections (100 by default).
POOL_DEFAULTS: dict[str, int] = {
    "pool_size": 10,
    "max_overflow": 10,
    "pool_timeout": 30,
    "pool_recycle": 1800,
}

#: JSON columns: NaN and Infinity are not JSON (RFC 8259 §6) and PostgreSQL's JSONB refuses them, so both
#: backends refuse them (ValueError) rather than SQLite storing what PostgreSQL could not.
_json_dumps = functools.partial(json.dumps, allow_nan=False)


def normalise_database_url(url: str) -> str:
    """The SQLAlchemy URL for a CONSULTCAM_DATABASE_URL: `postgres://` and `postgresql://` become
    `postgresql+asyncpg://`, `sqlite://` becomes `sqlite+aiosqlite://`, and libpq's `sslmode=` becomes
    asyncpg's `ssl=` (same values: disable, allow, prefer, require, verify-ca, verify-full). "" stays ""
    (the SQLite file in DATA_DIR).

    Raises ValueError naming the setting for any other scheme or driver (MySQL, psycopg…).
    """
    url = url.strip()
    if not url:
        return url
    scheme, sep, rest = url.partition("://")
    driver = _SCHEMES.get(scheme.lower()) if sep else None
    if driver is None:
        # Only the scheme is repeated: the rest of a database URL may hold a password.
        shown = scheme + sep if sep else "(none)"
        raise ValueError(
            f"CONSULTCAM_DATABASE_URL: unsupported database URL scheme {shown!r}; use "
            "postgresql://user:password@host:5432/dbname (PostgreSQL through asyncpg) or "
            "sqlite:///path/to/consultcam.db"
        )
    normalised = f"{driver}://{rest}"
    if driver.startswith("postgresql"):
        parsed = make_url(normalised)
        if "sslmode" in parsed.query:
            query = dict(parsed.query)
            query.setdefault("ssl", query.pop("sslmode"))
            normalised = parsed.set(query=query).render_as_string(hide_password=False)
    return normalised


def _pool_options(url: str) -> tuple[URL, dict[str, int]]:
    """Split consultcam's pool options off a PostgreSQL URL (asyncpg would refuse them as connect
    arguments). Raises ValueError for a value that is not a whole number."""
    parsed = make_url(url)
    options = dict(POOL_DEFAULTS)
    for name in POOL_DEFAULTS:
        if name in parsed.query:
            value = parsed.query[name]
            try:
                options[name] = int(value if isinstance(value, str) else value[-1])
            except ValueError:
                raise ValueError(f"CONSULTCAM_DATABASE_URL: {name} must be a whole number") from None
    return parsed.difference_update_query(POOL_DEFAULTS), options


def check_pool_options(url: str) -> None:
    """Raise ValueError naming the setting when a PostgreSQL URL's pool option is not a whole number (checked
    with the settings, so a typo stops the start rather than the first connection)."""
    if url and make_url(url).get_backend_name() == "postgresql":
        _pool_options(url)


def create_engine(url: str) -> AsyncEngine:
    """An async engine for `url`: `sqlite+aiosqlite:///path` or `postgresql+asyncpg://…` (see
    `normalise_database_url` for the spellings settings accept).

    SQLite gets foreign keys on (cascading deletes), WAL and a busy timeout so a second writer waits
    instead of failing with "database is locked". PostgreSQL gets a pool per process (`POOL_DEFAULTS`,
    overridable in the URL's query), connections checked before use (a restarted server or a failover
    costs one retry, not an error), and `application_name=consultcam` for `pg_stat_activity`. Behind
    PgBouncer in transaction mode add `?prepared_statement_cache_size=0`. No connection is made here; a
    SQLite database file is made 0600 (`private_sqlite_file`). Raises ValueError for an unsupported URL or
    pool option.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        private_sqlite_file(parsed.database)
        engine = create_async_engine(url, connect_args={"timeout": 30}, json_serializer=_json_dumps)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: object) -> None:  # a DBAPI (sqlite3) connection
            dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself, below
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(connection: Connection) -> None:
            # A writing transaction takes SQLite's write lock up front: a deferred one that reads first
            # fails with SQLITE_BUSY_SNAPSHOT when another writer commits in between (WAL mode).
            immediate = connection.get_execution_options().get(WRITE_OPTION)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    if parsed.get_backend_name() != "postgresql" or parsed.get_driver_name() != "asyncpg":
        raise ValueError(
            f"CONSULTCAM_DATABASE_URL: unsupported database {parsed.drivername!r}; "
            "use postgresql+asyncpg://… or sqlite+aiosqlite:///…"
        )
    clean, pool = _pool_options(url)
    connect_args: dict[str, Any] = {
        "timeout": 10,  # seconds to connect: a server that is down fails fast, not after asyncpg's 60
        "server_settings": {"application_name": "consultcam"},
    }
    return create_async_engine(
        clean, pool_pre_ping=True, connect_args=connect_args, json_serializer=_json_dumps, **pool
    )


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


class Transactions(Protocol):
    """Opens units of work: `async with tx() as uow:` (or `tx(writes=False)` for reads). A function that
    takes a `Transactions` owns its transactions (it opens and commits them, as many as it needs); one that
    takes a `UnitOfWork` runs inside its caller's. `Runtime.unit_of_work` is one."""

    def __call__(self, *, writes: bool = True) -> AbstractAsyncContextManager[UnitOfWork]: ...


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


def alembic_config(url: str) -> AlembicConfig:
    """Alembic configuration for the packaged migrations (`consultcam/migrations`); `url` as for
    `create_engine` (pool options in its query are dropped: migrations use one connection)."""
    from alembic.config import Config  # Alembic loads only for migrations

    if make_url(url).get_backend_name() == "postgresql":
        url = _pool_options(url)[0].render_as_string(hide_password=False)
    config = Config()
    config.set_main_option("script_location", "consultcam:migrations")
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str) -> None:
    """Upgrade the database at `url` to the newest revision. Synchronous: call it before the event loop.

    Safe to run from several processes at once on PostgreSQL (web processes and workers starting
    together): the migrations hold an advisory lock, so the second waits and then finds nothing to do.
    Raises what the driver raises when the server is unreachable (OSError, asyncpg errors).
    """
    from alembic import command  # Alembic loads only for migrations

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        private_sqlite_file(parsed.database)
    command.upgrade(alembic_config(url), "head")


#: Files SQLite keeps beside a database (WAL mode, and the rollback journal Alembic's connection uses).
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def private_sqlite_file(database: str | None) -> None:
    """Make the SQLite database file `database` (a path; None, "" and ":memory:" are no file) 0600 in a 0700
    folder before SQLite opens it, whatever the umask.

    SQLite would create it 0644 less the umask, and it creates its -wal, -shm and -journal files with the
    database file's mode (os_unix.c, findCreateFileMode): so the file is made here first, empty (an empty
    file is a new database to SQLite), and an existing one and its side files are narrowed to 0600 (an
    older install left them readable by others; `files.tighten` logs that it did).
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not files.create_private(path):
        for name in ("", *SQLITE_SIDE_FILES):
            files.tighten(path.with_name(path.name + name))
