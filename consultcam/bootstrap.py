"""The composition root: builds the `Runtime` (one adapter per port) from the settings, checks it can reach
what it needs, and nothing else does either.

The web app (`app.create_app`), the worker and every CLI command start from `build_runtime`; the adapters
are chosen by the settings' URLs through each port's registry (`storage.registry`, `events.registry`,
`commits.connectors.registry`); Medtech ALEX for launches (`launch.alex_api`) only with an `alex+` EMR URL.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable

from redis.asyncio import BlockingConnectionPool, Redis
from sqlalchemy import text

from consultcam import terminology
from consultcam.commits.connectors.registry import connector_for_grant, connector_from_url
from consultcam.config import Settings
from consultcam.db import create_engine, create_sessionmaker
from consultcam.events.registry import create_bus
from consultcam.files import PRIVATE_DIR, tighten
from consultcam.images.processing.lossless_edits import jpegtran_path
from consultcam.kit.jobs import create_broker
from consultcam.launch.alex_api import AlexLaunchApi
from consultcam.launch.smart_api import SmartApi
from consultcam.runtime import Runtime
from consultcam.storage.registry import create_store

log = logging.getLogger(__name__)

#: Redis connections per process (event reads are short; the Pub/Sub listener holds one).
REDIS_CONNECTIONS = 64


class Unreachable(RuntimeError):
    """A service the settings point at does not answer."""


def create_redis(redis_url: str) -> Redis | None:
    """The process's Redis client for `CONSULTCAM_REDIS_URL` (None when unset: embedded mode). A blocking
    pool of `REDIS_CONNECTIONS`: when every connection is busy (hundreds of streams woken at once) a caller
    waits its turn (up to 20 s) instead of failing with "Too many connections"."""
    if not redis_url:
        return None
    pool = BlockingConnectionPool.from_url(
        redis_url, max_connections=REDIS_CONNECTIONS, timeout=20, health_check_interval=30
    )
    return Redis(connection_pool=pool)


def build_runtime(settings: Settings) -> Runtime:
    """Build the adapters (no connection is made yet; an existing DATA_DIR is narrowed to 0700, see
    consultcam/files.py) and install the practice's body-site terminology for this process. Raises
    ValueError with the setting to fix when a URL is unsupported, OSError when a folder the settings name
    cannot be made."""
    # DATA_DIR holds the database, secrets and photos: made 0700 by whichever file comes first, and
    # narrowed to 0700 when an older install left it open. (Not made here: production may not use it.)
    tighten(settings.data_dir, PRIVATE_DIR)
    terminology.use(settings.terminology)  # the practice's body sites, for requests and commits alike
    engine = create_engine(settings.resolved_database_url)
    redis = create_redis(settings.redis_url)
    return Runtime(
        settings=settings,
        engine=engine,
        sessionmaker=create_sessionmaker(engine),
        store=create_store(
            settings.resolved_storage_url,
            secret_key=settings.secret_key,
            s3_endpoint_url=settings.s3_endpoint_url,
            s3_sse_kms_key_id=settings.s3_sse_kms_key_id,
        ),
        bus=create_bus(settings, redis),
        connector=connector_from_url(settings.emr_url, settings),
        broker=create_broker(settings.redis_url, prefix=settings.redis_prefix),
        redis=redis,
        medtech_launch=AlexLaunchApi.from_settings(settings),
        smart_launch=SmartApi.from_settings(settings),
        grant_connectors=functools.partial(connector_for_grant, settings),
    )


async def check_database(runtime: Runtime) -> None:
    """Raise what the driver raises when the database does not answer `SELECT 1`."""
    async with runtime.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def preflight(runtime: Runtime, timeout: float = 5.0) -> None:
    """Check that the database and Redis answer within `timeout` seconds each, so a process refuses to
    start rather than fail later. Raises `Unreachable` naming the setting to check. Logs a warning, and
    starts, when jpegtran is missing (`warn_without_jpegtran`)."""
    warn_without_jpegtran()
    probes: list[tuple[str, Awaitable[object]]] = [
        ("database (CONSULTCAM_DATABASE_URL)", check_database(runtime))
    ]
    if runtime.redis is not None:
        probes.append(("Redis (CONSULTCAM_REDIS_URL)", runtime.redis.ping()))
    for name, probe in probes:
        try:
            await asyncio.wait_for(probe, timeout)
        except Exception as exc:
            raise Unreachable(f"cannot reach the {name}: {type(exc).__name__}: {exc}") from exc


def warn_without_jpegtran() -> bool:
    """Log a warning when `jpegtran` (Debian package libjpeg-turbo-progs) is not on PATH: rotations and
    crops are then re-encoded instead of burned in losslessly (`images.processing.lossless_edits`), which
    works but loses a little detail. Returns whether it is installed; never refuses to start."""
    if jpegtran_path() is not None:
        return True
    log.warning(
        "jpegtran is not installed (Debian package libjpeg-turbo-progs): rotated and cropped photos will be "
        "re-encoded, with a small loss of detail, instead of being transformed losslessly"
    )
    return False
