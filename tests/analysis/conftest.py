"""Fixtures for the analysis tests: a local chat-completions server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.analysis.chat_server import ChatServer
from tests.conftest import serving


@pytest.fixture
async def chat_server() -> AsyncIterator[ChatServer]:
    """A chat-completions server on a free loopback port; its API root is `chat_server.url`."""
    server = ChatServer()
    async with serving(server.app) as origin:
        server.url = f"{origin}/v1"
        yield server
