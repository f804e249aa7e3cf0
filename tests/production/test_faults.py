"""Faults an operator meets: a service down at start, Redis lost while running."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import PATIENT, jpeg_bytes
from tests.e2e.harness import CONSULTCAM, free_port
from tests.production.cluster import Cluster
from tests.production.test_cluster import EventReader, paired_phone, upload
from tests.redis_server import RedisServer


def serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CONSULTCAM_")}
    return subprocess.run(
        [str(CONSULTCAM), "serve", "--host", "127.0.0.1", "--port", str(free_port())],
        env={**clean, "CONSULTCAM_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_redis_down_at_start_stops_serve_with_a_clear_message(tmp_path: Path):
    result = serve(tmp_path, CONSULTCAM_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert result.returncode == 2
    assert "cannot reach the Redis (CONSULTCAM_REDIS_URL)" in result.stderr


def test_postgresql_down_at_start_stops_serve_with_a_clear_message(tmp_path: Path):
    result = serve(
        tmp_path, CONSULTCAM_DATABASE_URL=f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x"
    )
    assert result.returncode == 2
    assert "CONSULTCAM_DATABASE_URL" in result.stderr


@pytest.fixture
def redis_server(tmp_path: Path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def wait_ready(url: str, want: int, timeout: float = 20) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(f"{url}/readyz", timeout=5)
        if response.status_code == want or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def test_losing_redis_turns_readyz_red_and_everything_works_again_once_it_is_back(
    tmp_path: Path, redis_server
):
    cluster = Cluster.start(tmp_path / "cluster", webs=1, worker=False, CONSULTCAM_REDIS_URL=redis_server.url)
    try:
        web = cluster.webs[0]
        with web.api() as desktop:
            session = desktop.post(
                "/api/sessions", json={"encounterId": "enc-fault", "patient": PATIENT}
            ).json()
        phone = paired_phone(cluster, session)
        redis_server.stop()

        down = wait_ready(web.url, 503)
        assert down.status_code == 503
        assert down.json()["checks"]["bus"].startswith("error")
        assert down.json()["checks"]["database"] == "ok"
        with web.api() as desktop:  # what lives in PostgreSQL still answers
            assert desktop.get(f"/api/sessions/{session['id']}").status_code == 200

        redis_server.start()
        assert wait_ready(web.url, 200).status_code == 200
        reader = EventReader(web.url, web.token, session["id"])  # the page reloaded
        image = upload(phone, session["id"], jpeg_bytes())
        [added] = reader.wait_for("image.added")
        reader.close()
        assert added["data"]["data"]["image"]["id"] == image["id"]
    finally:
        cluster.stop()
