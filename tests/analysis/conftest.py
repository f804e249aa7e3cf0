"""Fixtures for the analysis tests: a local chat-completions server; a session ready for photos."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.analysis.chat_server import ChatServer, serving
from tests.conftest import start_session


@pytest.fixture
async def chat_server() -> AsyncIterator[ChatServer]:
    """A chat-completions server on a free loopback port; its API root is `chat_server.url`."""
    server = ChatServer()
    async with serving(server.app) as origin:
        server.url = f"{origin}/v1"
        yield server


async def consented_session(clinician: httpx.AsyncClient) -> dict[str, Any]:
    """A new capture session with the patient's consent recorded, so photos may be uploaded."""
    session = await start_session(clinician)
    consent = await clinician.put(
        f"/api/sessions/{session['id']}/consent", json={"scope": "clinical", "givenBy": "patient"}
    )
    assert consent.status_code == 200, consent.text
    return session
