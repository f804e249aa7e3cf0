"""A production-shaped consultcam on one machine, for the multi-process tests and bench/production_load.py:
N `consultcam serve` processes and a `consultcam worker`, sharing one PostgreSQL database (made fresh), one
Redis (a fresh key prefix) and one S3 protocol server (moto, a fresh bucket)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import boto3

from consultcam.db import migrate
from tests.e2e.harness import CONSULTCAM, Server, start_server
from tests.storage.moto_server import ACCESS_KEY, REGION, SECRET_KEY, MotoServer, start_moto_server

POSTGRES_ADMIN = os.environ.get("CONSULTCAM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CONSULTCAM_TEST_REDIS", "redis://127.0.0.1:6379/0")


def create_database() -> str:
    """A new, empty PostgreSQL database; returns its SQLAlchemy URL (asyncpg driver)."""
    name = f"consultcam_mp_{uuid.uuid4().hex[:10]}"

    async def create() -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(create())
    return POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]

    async def drop() -> None:
        connection = await asyncpg.connect(POSTGRES_ADMIN)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    asyncio.run(drop())


@dataclass
class Cluster:
    """The shared services and the processes using them. `env` is what every process gets."""

    tmp: Path
    env: dict[str, str]
    moto: MotoServer
    bucket: str
    webs: list[Server] = field(default_factory=list)
    worker: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, tmp: Path, *, webs: int = 2, worker: bool = True, **extra_env: str) -> Cluster:
        tmp.mkdir(parents=True, exist_ok=True)
        moto = start_moto_server(tmp / "moto.log")
        aws = {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        bucket = f"consultcam-mp-{uuid.uuid4().hex[:10]}"
        s3 = boto3.client(
            "s3",
            endpoint_url=moto.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        database = create_database()
        migrate(database)
        env = {
            **aws,
            "CONSULTCAM_DATABASE_URL": database,
            "CONSULTCAM_REDIS_URL": REDIS_URL,
            "CONSULTCAM_REDIS_PREFIX": f"cc-mp-{uuid.uuid4().hex[:8]}:",
            "CONSULTCAM_STORAGE_URL": f"s3://{bucket}/consultcam",
            "CONSULTCAM_S3_ENDPOINT_URL": moto.endpoint,
            "CONSULTCAM_SWEEP_INTERVAL_SECONDS": "2",
            **extra_env,
        }
        cluster = cls(tmp=tmp, env=env, moto=moto, bucket=bucket)
        try:
            for index in range(webs):
                cluster.webs.append(cluster.start_web(index))
            if worker:
                cluster.start_worker()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def start_web(self, index: int) -> Server:
        return start_server(self.tmp / f"web{index}", **self.env)

    def restart_web(self, index: int) -> Server:
        """Stop web process `index` and start a new one (new port) on the same services."""
        self.webs[index].stop()
        self.webs[index] = self.start_web(index)
        return self.webs[index]

    def start_worker(self) -> None:
        log = (self.tmp / "worker.log").open("wb")
        self.worker = subprocess.Popen(
            [str(CONSULTCAM), "worker"],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.tmp,
        )
        time.sleep(0.5)
        if self.worker.poll() is not None:
            raise RuntimeError(f"consultcam worker exited: {(self.tmp / 'worker.log').read_text()}")

    def s3(self):  # type: ignore[no-untyped-def]
        return boto3.client(
            "s3",
            endpoint_url=self.moto.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def stop(self) -> None:
        for web in self.webs:
            web.stop()
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()
            self.worker.wait(timeout=10)
        self.moto.stop()
        if "CONSULTCAM_DATABASE_URL" in self.env:
            drop_database(self.env["CONSULTCAM_DATABASE_URL"])
