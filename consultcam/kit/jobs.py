"""Job primitives on taskiq: the broker for a Redis URL (or in-process), retry with full jitter, and enqueue
by task name, so a service queues a job without importing the task's module (the task list is in
`consultcam.worker`).

Embedded: taskiq's in-process broker runs a job in this process as soon as it is queued. Production
(`CONSULTCAM_REDIS_URL`): a Redis Streams broker (taskiq-redis); web processes only queue, `consultcam
worker` processes run the jobs. A job is acknowledged only after it ran, so one lost with a killed worker
is claimed again by another worker once it has been idle for `JOB_REDELIVERY_SECONDS` (XAUTOCLAIM).

taskiq was chosen over arq and SAQ because it has a real in-process broker with the same task API as its
Redis brokers, so the embedded default and production run the same task code, and its Redis Streams
broker acknowledges jobs. Jobs are queued only after the transaction that caused them commits.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio import Redis
from taskiq import AsyncBroker, InMemoryBroker, TaskiqMessage, TaskiqMiddleware, TaskiqResult
from taskiq.kicker import AsyncKicker
from tenacity import AsyncRetrying, retry_if_not_exception_type, stop_after_attempt, wait_random_exponential

from consultcam import metrics

log = logging.getLogger(__name__)

JobFn = TypeVar("JobFn", bound=Callable[..., Awaitable[Any]])

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

        return run  # type: ignore[return-value]

    return decorate


async def enqueue(broker: AsyncBroker, task_name: str, *args: Any) -> None:
    """Queue the task registered as `task_name` (e.g. "consultcam.analysis.describe") with `args` (JSON
    values) on `broker`. The caller need not import the task: the worker that runs it has (see
    `consultcam.worker`)."""
    await AsyncKicker(task_name=task_name, broker=broker, labels={}).kiq(*args)


async def claim_period(redis: Redis | None, key_prefix: str, name: str, period_seconds: float) -> bool:
    """True for exactly one caller per period across every process sharing the Redis (SET NX with
    expiry); always True without Redis (embedded mode), where there is one process."""
    if redis is None:
        return True
    period = int(time.time() // period_seconds)
    key = f"{key_prefix}periodic:{name}:{period}"
    return bool(await redis.set(key, "1", nx=True, ex=max(int(period_seconds * 2), 1)))
