"""Fixtures of the sign-in tests: consultcam on a fixed loopback port with the test identity provider
(tests/auth/idp.py) registered as its OIDC client, on each database backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from consultcam.app import create_app
from consultcam.config import Settings
from tests.auth.idp import CLIENT_ID, CLIENT_SECRET, Provider, identity_provider
from tests.conftest import CsrfToken, serving
from tests.e2e.harness import free_port


def oidc_settings(settings: Settings, origin: str, issuer: str, **extra: Any) -> Settings:
    """`settings` with browser sign-in through `issuer` as the test client, PUBLIC_URL `origin`."""
    return settings.model_copy(
        update={
            "public_url": origin,
            "oidc_issuer": issuer,
            "oidc_audience": CLIENT_ID,
            "oidc_client_id": CLIENT_ID,
            "oidc_client_secret": SecretStr(CLIENT_SECRET),
            **extra,
        }
    )


@dataclass
class Deployment:
    """consultcam (`origin`, `app`, `settings`) signing in through `provider`."""

    origin: str
    app: Any
    settings: Settings
    provider: Provider

    def browser(self) -> httpx.AsyncClient:
        """A browser without JavaScript: keeps cookies (for both origins) and the CSRF token, follows no
        redirect by itself."""
        return httpx.AsyncClient(timeout=20, event_hooks=CsrfToken().hooks(), follow_redirects=False)


@asynccontextmanager
async def deployed(settings: Settings, **provider_options: Any) -> AsyncIterator[Deployment]:
    """consultcam with the test identity provider, both running on loopback."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    async with identity_provider(origin, **provider_options) as provider:
        configured = oidc_settings(settings, origin, provider.issuer)
        app = create_app(configured)
        async with app.router.lifespan_context(app), serving(app, port):
            yield Deployment(origin, app, configured, provider)


@pytest.fixture
async def deployment(settings: Settings) -> AsyncIterator[Deployment]:
    async with deployed(settings) as running:
        yield running
