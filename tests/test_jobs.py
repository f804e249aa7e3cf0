"""The job queue on a real Redis: workers run queued jobs, a job lost with a killed worker runs again,
the periodic sweeper runs once per period however many processes try."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from taskiq import InMemoryBroker, async_shared_broker
from taskiq.acks import AcknowledgeType
from taskiq.api import run_receiver_task
from taskiq_redis import RedisStreamBroker

from consultcam.bootstrap import build_runtime
from consultcam.config import Settings
from consultcam.db import migrate
from consultcam.kit import jobs as kit_jobs
from consultcam.models import CaptureSession, utcnow
from consultcam.runtime import Runtime
from consultcam.worker import run_worker, start, stop
from tests.conftest import CLINICIAN_TOKEN

REDIS = "redis://127.0.0.1:6379/0"
EXPIRED = "11111111-1111-4111-8111-111111111111"
ROOT = Path(__file__).resolve().parents[1]


@async_shared_broker.task(task_name="tests.record")
async def record(key: str, hold: float) -> None:
    """Notes in Redis that it started, works for `hold` seconds (its worker may be killed meanwhile), then
    notes that it finished."""
    async with Redis.from_url(REDIS) as redis:
        await redis.rpush(key, "started")
        await asyncio.sleep(hold)
        await redis.rpush(key, "finished")


def short_redelivery_broker(prefix: str) -> RedisStreamBroker:
    """A broker whose unacknowledged jobs are taken over after 1 s (not JOB_REDELIVERY_SECONDS)."""
    return RedisStreamBroker(
        url=REDIS,
        queue_name=f"{prefix}jobs",
        idle_timeout=1000,
        consumer_group_name=f"{prefix}workers",
        unacknowledged_lock_timeout=1,
    )


WORKER_SCRIPT = """
import asyncio, sys
sys.path.insert(0, sys.argv[1])
from taskiq.acks import AcknowledgeType
from taskiq.api import run_receiver_task
from tests.test_jobs import short_redelivery_broker

async def main():
    broker = short_redelivery_broker(sys.argv[2])
    await broker.startup()
    await run_receiver_task(broker, ack_time=AcknowledgeType.WHEN_EXECUTED)

asyncio.run(main())
"""


def redis_settings(tmp_path: Path, **extra: Any) -> Settings:
    settings = Settings(
        data_dir=tmp_path / "data",
        clinician_token=CLINICIAN_TOKEN,
        redis_url=REDIS,
        redis_prefix=f"cc-test-{uuid.uuid4().hex[:8]}:",
        **extra,
    )
    migrate(settings.resolved_database_url)
    return settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return redis_settings(tmp_path, sweep_interval_seconds=1)


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    runtime = build_runtime(settings)
    yield runtime
    await runtime.close()


async def test_a_worker_runs_the_sweeper_queued_by_a_web_process(runtime: Runtime, tmp_path: Path):
    """The web process (here: `runtime`) only queues; a worker with its own runtime runs the job."""
    async with runtime.unit_of_work() as uow:
        now = utcnow()
        uow.session.add(
            CaptureSession(
                id=EXPIRED,
                encounter_id="e",
                patient_id="p",
                patient_name="N",
                created_by="t",
                created_at=now,
                retain_until=now,
                last_activity_at=now - timedelta(days=1),
            )
        )
    worker_runtime = build_runtime(runtime.settings)
    worker = asyncio.create_task(run_worker(worker_runtime))
    await start(runtime)
    try:
        await kit_jobs.enqueue(runtime.broker, "consultcam.sweep")
        for _ in range(100):
            async with runtime.unit_of_work(writes=False) as uow:
                session = await uow.session.get(CaptureSession, EXPIRED)
            if session is not None and session.status == "expired":
                break
            await asyncio.sleep(0.1)
        assert session is not None
        assert session.status == "expired"
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await stop(runtime)
        await worker_runtime.close()


async def test_a_job_lost_with_a_killed_worker_runs_again(tmp_path: Path):
    """A worker process killed (SIGKILL) mid-job acknowledged nothing: another worker takes the job over."""
    prefix = f"cc-test-{uuid.uuid4().hex[:8]}:"
    key = f"{prefix}runs"
    producer, survivor_broker = short_redelivery_broker(prefix), short_redelivery_broker(prefix)
    await producer.startup()
    await survivor_broker.startup()
    redis = Redis.from_url(REDIS)
    victim = subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT, str(ROOT), prefix])
    try:
        await record.kicker().with_broker(producer).kiq(key, 3.0)
        for _ in range(600):  # the victim process starts (imports the worker's task modules) first
            if await redis.lrange(key, 0, -1):
                break
            await asyncio.sleep(0.1)
        assert await redis.lrange(key, 0, -1) == [b"started"]
        victim.kill()  # the worker dies mid-job
        victim.wait(timeout=10)
        await asyncio.sleep(1.2)  # longer than the redelivery time
        survivor = asyncio.create_task(
            run_receiver_task(survivor_broker, ack_time=AcknowledgeType.WHEN_EXECUTED)
        )
        # taskiq-redis claims idle jobs when its read returns something: in production the periodic
        # sweeper's job, queued every SWEEP_INTERVAL_SECONDS, is that something; here another job is.
        await record.kicker().with_broker(producer).kiq(f"{key}:next", 0.0)
        for _ in range(150):
            if (await redis.lrange(key, -1, -1)) == [b"finished"]:
                break
            await asyncio.sleep(0.1)
        survivor.cancel()
        await asyncio.gather(survivor, return_exceptions=True)
        assert await redis.lrange(key, 0, -1) == [b"started", b"started", b"finished"]
    finally:
        victim.kill()
        await redis.delete(key, f"{key}:next")
        await redis.aclose()
        await producer.shutdown()
        await survivor_broker.shutdown()


async def test_the_periodic_sweeper_is_claimed_once_per_period(runtime: Runtime, tmp_path: Path):
    others = [build_runtime(runtime.settings) for _ in range(4)]
    try:
        claims = await asyncio.gather(
            *(
                kit_jobs.claim_period(r.redis, r.settings.redis_prefix, "sweep", 60)
                for r in [runtime, *others]
            )
        )
        assert sorted(claims) == [False, False, False, False, True]
    finally:
        for other in others:
            await other.close()


async def test_embedded_mode_always_claims(tmp_path: Path):
    settings = Settings(data_dir=tmp_path / "data", clinician_token=CLINICIAN_TOKEN)
    runtime = build_runtime(settings)
    try:
        assert await kit_jobs.claim_period(runtime.redis, runtime.settings.redis_prefix, "sweep", 60)
        assert await kit_jobs.claim_period(runtime.redis, runtime.settings.redis_prefix, "sweep", 60)
    finally:
        await runtime.close()


attempts: dict[str, int] = {}


@async_shared_broker.task(task_name="tests.flaky")
@kit_jobs.retried(attempts=4, max_wait_seconds=0.05)
async def flaky(key: str, failures: int, permanent: bool = False) -> str:
    """Fails `failures` times (a transient error, or a permanent one), then succeeds."""
    attempts[key] = attempts.get(key, 0) + 1
    if attempts[key] <= failures:
        raise kit_jobs.PermanentJobError("bad input") if permanent else ConnectionError("database restarting")
    return "done"


async def test_a_failing_job_is_retried_with_back_off_until_it_succeeds():
    broker = InMemoryBroker()
    await broker.startup()
    try:
        task = await flaky.kicker().with_broker(broker).kiq("transient", 2)
        result = await task.wait_result(timeout=5)
        assert result.return_value == "done"
        assert attempts["transient"] == 3
        task = await flaky.kicker().with_broker(broker).kiq("hopeless", 10)
        result = await task.wait_result(timeout=5)
        assert result.is_err
        assert attempts["hopeless"] == 4  # gives up after the last try
    finally:
        await broker.shutdown()


async def test_a_permanent_failure_is_not_retried():
    broker = InMemoryBroker()
    await broker.startup()
    try:
        task = await flaky.kicker().with_broker(broker).kiq("permanent", 1, True)
        result = await task.wait_result(timeout=5)
        assert result.is_err
        assert attempts["permanent"] == 1
    finally:
        await broker.shutdown()
