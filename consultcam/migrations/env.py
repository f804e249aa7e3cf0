"""Alembic environment: runs migrations over the async engine for SQLite and PostgreSQL alike.

On PostgreSQL the migrations run in one transaction that first takes an advisory lock, so processes that
start together (several `consultcam serve` and `consultcam worker`) upgrade one after the other: the
later ones read the version table after the first committed and find nothing left to do.
"""

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from consultcam.models import Base

config = context.config
target_metadata = Base.metadata

#: pg_advisory_xact_lock key held while migrating: the bytes "ccmigrat" as a bigint.
MIGRATION_LOCK = int.from_bytes(b"ccmigrat", "big") - 2**63


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()


async def _online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if not url:  # db.migrate always sets it; alembic run by hand must too
        raise RuntimeError("sqlalchemy.url is not set: run migrations with `consultcam migrate`")
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_online())
