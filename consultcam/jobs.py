"""The sweep task, the periodic sweeper and the worker loop (the job primitives are `consultcam.kit.jobs`)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from taskiq import TaskiqDepends, TaskiqState, async_shared_broker
from taskiq.acks import AcknowledgeType

import consultcam.analysis.tasks  # noqa: F401  registers consultcam.analysis.describe (web app and worker)
from consultcam.kit.jobs import claim_period, enqueue, retried

if TYPE_CHECKING:
    from consultcam.runtime import Runtime

log = logging.getLogger(__name__)


@async_shared_broker.task(task_name="consultcam.sweep")
@retried(attempts=3, max_wait_seconds=10)
async def sweep_task(state: TaskiqState = TaskiqDepends()) -> dict[str, Any]:  # noqa: B008 (taskiq's DI)
    """Run the sweeper once (see `sessions.retention.sweep`); returns its report as a dict."""
    from consultcam.sessions.retention import sweep

    runtime: Runtime = state.runtime
    return asdict(await sweep(runtime))


async def start(runtime: Runtime) -> None:
    """Bind the runtime to its broker (tasks read it from the broker's state) and start the broker."""
    runtime.broker.state.runtime = runtime
    await runtime.broker.startup()


async def stop(runtime: Runtime) -> None:
    await runtime.broker.shutdown()


async def run_periodic_sweeper(runtime: Runtime) -> None:
    """Queue the sweeper once per `SWEEP_INTERVAL_SECONDS` until cancelled, however many processes run
    this loop. The first run is one interval after start."""
    interval = runtime.settings.sweep_interval_seconds
    while True:
        await asyncio.sleep(interval)
        try:
            if await claim_period(runtime.redis, runtime.settings.redis_prefix, "sweep", interval):
                await enqueue(runtime.broker, "consultcam.sweep")
        except Exception:
            log.exception("could not queue the sweeper")


async def run_worker(runtime: Runtime) -> None:
    """A worker: take jobs from the Redis broker (acknowledged after they ran) and keep the periodic
    sweeper going. Runs until cancelled."""
    from taskiq.api import run_receiver_task

    await start(runtime)
    sweeper = asyncio.create_task(run_periodic_sweeper(runtime))
    try:
        await run_receiver_task(runtime.broker, ack_time=AcknowledgeType.WHEN_EXECUTED, max_async_tasks=20)
    finally:
        sweeper.cancel()
        await stop(runtime)
