"""What the Medtech and SMART launch tests share (tests/launch/test_medtech_launch.py,
tests/launch/test_smart_launch.py): a browser on the app, counts and audit rows read from its database, and
the checks every refusal page passes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx
from sqlalchemy import func, select

from consultcam.models import AuditEvent, CaptureSession, SignInSession
from tests.conftest import CsrfToken


def browser(app: Any) -> httpx.AsyncClient:
    """A browser with no sign-in: keeps cookies, follows no redirect."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", event_hooks=CsrfToken().hooks()
    )


async def count(app: Any, model: Any) -> int:
    async with app.state.runtime.sessionmaker() as db:
        return int((await db.execute(select(func.count()).select_from(model))).scalar_one())


async def audit(app: Any, action: str) -> list[AuditEvent]:
    async with app.state.runtime.sessionmaker() as db:
        query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        return list((await db.execute(query)).scalars())


async def assert_refusal_page(
    app: Any, response: httpx.Response, status: int, reason: str, words: Iterable[str], made: Iterable[Any]
) -> AuditEvent:
    """The page for a refused launch: its status and `words`, never cached nor referred, no cookie, and
    nothing made (no capture session, no sign-in, no row of the launch's own `made` models); returns the one
    `launch.refused` audit row, whose detail names `reason`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert f'data-reason="{reason}"' in response.text
    for word in words:
        assert word in response.text, word
    assert "set-cookie" not in response.headers
    assert await count(app, CaptureSession) == 0
    assert await count(app, SignInSession) == 0
    for model in made:
        assert await count(app, model) == 0
    [refused] = await audit(app, "launch.refused")
    assert refused.detail["reason"] == reason
    return refused
