"""Fixtures for the S3 store: one moto S3 server per test session, AWS credentials for it, fresh buckets."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from consultcam.storage.s3 import S3ObjectStore
from tests.storage.moto_server import ACCESS_KEY, REGION, SECRET_KEY, MotoServer, start_moto_server


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = start_moto_server(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture
def moto_endpoint(moto_server: MotoServer) -> str:
    return moto_server.endpoint


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Credentials and region through the standard AWS variables (boto3's default chain), and nothing from
    the developer's ~/.aws or environment."""
    empty = tmp_path_factory.mktemp("aws") / "none"
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def s3_admin(moto_endpoint: str, aws_env: None) -> Iterator[Any]:
    """A plain boto3 client on the server, to look behind the store's back."""
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)
    yield client
    client.close()


@pytest.fixture
def bucket(s3_admin: Any) -> str:
    """A new, empty bucket in REGION."""
    name = f"consultcam-test-{uuid.uuid4().hex[:12]}"
    s3_admin.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    return name


@pytest.fixture
async def store(bucket: str, moto_endpoint: str) -> Any:
    """The adapter under test, with a two-part prefix and small list pages."""
    s3 = S3ObjectStore(bucket, "clinic-a/photos", endpoint_url=moto_endpoint, page_size=3)
    yield s3
    await s3.close()
