"""The worker: every domain's tasks, the periodic sweeper, and the loop that runs queued jobs.

This is the one module that knows the task modules (imported below, at top level: importing one registers
its tasks): services queue a job by its task name (`kit.jobs.enqueue`), and a process that runs jobs (a
`consultcam worker`, or the web app in embedded mode, whose in-process broker runs them in place) imports
this module so that every name is registered on taskiq's shared broker.
"""

from __future__ import annotations

import asyncio
import logging

from taskiq.acks import AcknowledgeType
from taskiq.api import run_receiver_task

# Every module that registers tasks; a new task's module joins this list.
import consultcam.analysis.tasks  # registers consultcam.analysis.describe
import consultcam.retention.tasks  # noqa: F401  registers consultcam.sweep
from consultcam.kit.jobs import claim_period, enqueue
from consultcam.retention.tasks import SWEEP_TASK
from consultcam.runtime import Runtime

log = logging.getLogger(__name__)


async def start(runtime: Runtime) -> None:
    """Bind the runtime to its broker (tasks read it from the broker's state) and start the broker."""
    runtime.broker.state.runtime = runtime
    await runtime.broker.startup()


async def stop(runtime: Runtime) -> None:
    """Stop the broker (in-process: waits for nothing more; Redis: closes its connections)."""
    await runtime.broker.shutdown()


async def run_periodic_sweeper(runtime: Runtime) -> None:
    """Queue the sweeper once per `SWEEP_INTERVAL_SECONDS` until cancelled, however many processes run
    this loop. The first run is one interval after start."""
    interval = runtime.settings.sweep_interval_seconds
    while True:
        await asyncio.sleep(interval)
        try:
            if await claim_period(runtime.redis, runtime.settings.redis_prefix, "sweep", interval):
                await enqueue(runtime.broker, SWEEP_TASK)
        except Exception:
            log.exception("could not queue the sweeper")


async def run_worker(runtime: Runtime) -> None:
    """A worker: take jobs from the Redis broker (acknowledged after they ran) and keep the periodic
    sweeper going. Runs until cancelled."""
    await start(runtime)
    sweeper = asyncio.create_task(run_periodic_sweeper(runtime))
    try:
        await run_receiver_task(runtime.broker, ack_time=AcknowledgeType.WHEN_EXECUTED, max_async_tasks=20)
    finally:
        sweeper.cancel()
        await stop(runtime)
