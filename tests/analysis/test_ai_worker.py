"""Production shape: the web process only queues the description job on Redis; a `consultcam worker`
process, started as an operator would, runs it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.analysis.chat_server import DESCRIPTION
from tests.conftest import jpeg_bytes, pair_phone, start_session, upload
from tests.test_jobs import REDIS

MODEL = "qwen2.5-vl-test"


@pytest.fixture
def settings_overrides(chat_server) -> dict[str, Any]:
    return {
        "redis_url": REDIS,
        "redis_prefix": f"cc-test-{uuid.uuid4().hex[:8]}:",
        "ai_base_url": chat_server.url,
        "ai_model": MODEL,
        "ai_timeout_seconds": 5,
    }


@pytest.fixture
def worker(settings, tmp_path: Path):
    """`consultcam worker` in its own process, configured like the web process (environment variables)."""
    env = {
        **os.environ,
        "CONSULTCAM_DATA_DIR": str(settings.data_dir),
        "CONSULTCAM_DATABASE_URL": settings.database_url,
        "CONSULTCAM_REDIS_URL": settings.redis_url,
        "CONSULTCAM_REDIS_PREFIX": settings.redis_prefix,
        "CONSULTCAM_CLINICIAN_TOKEN": settings.clinician_token,
        "CONSULTCAM_AI_BASE_URL": settings.ai_base_url,
        "CONSULTCAM_AI_MODEL": settings.ai_model,
        "CONSULTCAM_AI_TIMEOUT_SECONDS": str(settings.ai_timeout_seconds),
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", "from consultcam.cli import app; app()", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    yield log
    process.terminate()
    process.wait(timeout=10)


async def test_a_worker_process_describes_a_photo_queued_by_the_web_process(
    clinician, new_client, chat_server, worker: Path
):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    registered = (await upload(phone, session["id"], jpeg_bytes())).json()
    assert registered["analysis"]["status"] == "pending"

    deadline = time.monotonic() + 30
    while True:
        images = (await clinician.get(f"/api/sessions/{session['id']}/images")).json()["images"]
        analysis = images[0]["analysis"]
        if analysis["status"] in ("done", "failed"):
            break
        log = worker.read_text()
        assert "is not found" not in log, f"the worker does not know the job:\n{log[-2000:]}"
        assert time.monotonic() < deadline, f"still {analysis}; worker log:\n{log[-2000:]}"
        await asyncio.sleep(0.2)

    assert analysis["status"] == "done", analysis
    assert analysis["description"] == DESCRIPTION
    assert len(chat_server.requests) == 1
