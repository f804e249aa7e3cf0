"""The job queue (taskiq) and the periodic sweeper.

Embedded: taskiq's in-process broker runs a job in this process as soon as it is queued. Production
(`CONSULTCAM_REDIS_URL`): a Redis Streams broker (taskiq-redis); web processes only queue, `consultcam
worker` processes run the jobs. A job is acknowledged only after it ran, so one lost with a killed worker
is claimed again by another worker once it has been idle for `JOB_REDELIVERY_SECONDS` (XAUTOCLAIM).

taskiq was chosen over arq and SAQ because it has a real in-process broker with the same task API as its
Redis brokers, so the embedded default and production run the same task code, and its Redis Streams
broker acknowledges jobs. Jobs are queued only after the transaction that caused them commits.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from taskiq import (
    AsyncBroker,
    InMemoryBroker,
    TaskiqDepends,
    TaskiqMessage,
    TaskiqMiddleware,
    TaskiqResult,
    TaskiqState,
    async_shared_broker,
)
from taskiq.acks import AcknowledgeType
from tenacity import AsyncRetrying, retry_if_not_exception_type, stop_after_attempt, wait_random_exponential

from consultcam import metrics

if TYPE_CHECKING:
    from consultcam.runtime import Runtime

log = logging.getLogger(__name__)

JobFn = Callable[..., Awaitable[Any]]

#: How long a taken job may stay unacknowledged before another worker takes it over.
JOB_REDELIVERY_SECONDS = 300


class JobMetrics(TaskiqMiddleware):
    """Counts jobs by task and outcome and times them (consultcam_jobs_total, consultcam_job_seconds)."""

    def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        metrics.JOBS.labels(message.task_name, "error" if result.is_err else "ok").inc()
        metrics.JOB_SECONDS.labels(message.task_name).observe(result.execution_time)


def create_broker(redis_url: str, *, prefix: str = "consultcam:") -> AsyncBroker:
    """The broker for `CONSULTCAM_REDIS_URL`: unset → in-process; `redis://…` → Redis Streams."""
    if not redis_url:
        return InMemoryBroker(await_inplace=False).with_middlewares(JobMetrics())
    from taskiq_redis import RedisStreamBroker

    return RedisStreamBroker(
        url=redis_url,
        queue_name=f"{prefix}jobs",
        consumer_group_name=f"{prefix}workers",
        idle_timeout=JOB_REDELIVERY_SECONDS * 1000,
        unacknowledged_lock_timeout=JOB_REDELIVERY_SECONDS,
        maxlen=100_000,
    ).with_middlewares(JobMetrics())


class PermanentJobError(Exception):
    """A job failure that retrying cannot fix (bad input): reported at once, never retried."""


def retried(attempts: int = 5, max_wait_seconds: float = 60.0) -> Callable[[JobFn], JobFn]:
    """Retry a job on failure: up to `attempts` tries, waiting exponentially longer with full jitter between
    them (tenacity's `wait_random_exponential`, the "full jitter" scheme of AWS's architecture blog, 2015),
    never for a `PermanentJobError`. The wait happens inside the worker, before the job is acknowledged, so a
    worker killed meanwhile leaves the job to another (taskiq-redis has no delayed redelivery)."""

    def decorate(fn: JobFn) -> JobFn:
        @functools.wraps(fn)
        async def run(*args: Any, **kwargs: Any) -> Any:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(attempts),
                wait=wait_random_exponential(multiplier=0.5, max=max_wait_seconds),
                retry=retry_if_not_exception_type(PermanentJobError),
                reraise=True,
                before_sleep=lambda state: log.warning(
                    "job %s failed (%s), try %d of %d",
                    fn.__name__,
                    type(state.outcome.exception()).__name__ if state.outcome else "?",
                    state.attempt_number,
                    attempts,
                ),
            ):
                with attempt:
                    return await fn(*args, **kwargs)
            raise AssertionError("unreachable")  # pragma: no cover

        return run

    return decorate


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


async def enqueue(runtime: Runtime, task: Any, *args: Any) -> None:
    """Queue `task(*args)` on the runtime's broker (not a process-global one, so apps never cross)."""
    await task.kicker().with_broker(runtime.broker).kiq(*args)


async def claim_period(runtime: Runtime, name: str, period_seconds: float) -> bool:
    """True for exactly one caller per period across every process sharing the Redis (SET NX with
    expiry); always True in embedded mode, where there is one process."""
    if runtime.redis is None:
        return True
    period = int(time.time() // period_seconds)
    key = f"{runtime.settings.redis_prefix}periodic:{name}:{period}"
    return bool(await runtime.redis.set(key, "1", nx=True, ex=max(int(period_seconds * 2), 1)))


async def run_periodic_sweeper(runtime: Runtime) -> None:
    """Queue the sweeper once per `SWEEP_INTERVAL_SECONDS` until cancelled, however many processes run
    this loop. The first run is one interval after start."""
    interval = runtime.settings.sweep_interval_seconds
    while True:
        await asyncio.sleep(interval)
        try:
            if await claim_period(runtime, "sweep", interval):
                await enqueue(runtime, sweep_task)
        except Exception:
            log.exception("could not queue the sweeper")


async def run_worker(runtime: Runtime) -> None:
    """A worker: take jobs from the Redis broker (acknowledged after they ran) and keep the periodic
    sweeper going. Runs until cancelled."""
    from taskiq.api import run_receiver_task

    import consultcam.analysis.tasks  # noqa: F401  registers consultcam.analysis.describe (a cycle at module level)

    await start(runtime)
    sweeper = asyncio.create_task(run_periodic_sweeper(runtime))
    try:
        await run_receiver_task(runtime.broker, ack_time=AcknowledgeType.WHEN_EXECUTED, max_async_tasks=20)
    finally:
        sweeper.cancel()
        await stop(runtime)
