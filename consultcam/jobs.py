"""The job queue: taskiq, with its in-process broker in embedded mode (a Redis broker and
`consultcam worker` processes arrive with the production adapters), and the periodic sweeper.

taskiq was chosen because it has a real in-process broker with the same task API as its Redis brokers,
so the embedded default and production run the same task code. Jobs are queued only after the
transaction that caused them commits (`UnitOfWork.after_commit`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict
from typing import Any

from taskiq import AsyncBroker, InMemoryBroker, TaskiqDepends, TaskiqState

from consultcam.runtime import Runtime

log = logging.getLogger(__name__)


#: The in-process broker (embedded mode).
broker: AsyncBroker = InMemoryBroker()


@broker.task(task_name="consultcam.sweep")
async def sweep_task(state: TaskiqState = TaskiqDepends()) -> dict[str, Any]:  # noqa: B008 (taskiq's DI)
    """Run the sweeper once (see `sessions.retention.sweep`); returns its report as a dict."""
    from consultcam.sessions.retention import sweep

    runtime: Runtime = state.runtime
    return asdict(await sweep(runtime))


async def start(runtime: Runtime) -> None:
    """Bind the runtime to the broker and start it."""
    broker.state.runtime = runtime
    await broker.startup()


async def stop() -> None:
    await broker.shutdown()


async def run_periodic_sweeper(interval_seconds: float) -> None:
    """Queue the sweeper every `interval_seconds` until cancelled (the embedded scheduler). The first run
    is one interval after start: nothing expires faster than that, and start-up stays quick."""
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            await sweep_task.kiq()
        except Exception:
            log.exception("could not queue the sweeper")
