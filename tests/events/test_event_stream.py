"""The desktop's live updates over real HTTP: a uvicorn server, an SSE client, replay with Last-Event-ID."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from consultcam.app import create_app
from consultcam.events.memory import InProcessEventBus
from tests.conftest import CLINICIAN_TOKEN, CsrfToken, jpeg_bytes, serving, start_session, token_of, upload


@pytest.fixture
async def server(settings) -> AsyncIterator[str]:
    """consultcam served by uvicorn on a free loopback port, in this event loop."""
    async with serving(create_app(settings)) as origin:
        yield origin


async def read_events(response: httpx.Response, count: int, timeout: float = 5) -> list[dict[str, Any]]:
    """Parse `count` SSE events (id, event, data) from a streaming response."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}

    async def consume() -> None:
        async for line in response.aiter_lines():
            if not line:
                if "event" in current:
                    events.append(dict(current))
                    if len(events) == count:
                        return
                current.clear()
            elif not line.startswith(":"):
                field, _, value = line.partition(":")
                current[field] = json.loads(value.strip()) if field == "data" else value.strip()

    await asyncio.wait_for(consume(), timeout)
    return events


async def test_the_desktop_sees_a_photo_live_as_it_is_registered(server):
    """Latency is measured in bench/capture_latency.py; here: the open stream delivers it, in order."""
    headers = {"authorization": f"Bearer {CLINICIAN_TOKEN}"}
    async with (
        httpx.AsyncClient(base_url=server, headers=headers) as desktop,
        httpx.AsyncClient(base_url=server, event_hooks=CsrfToken().hooks()) as phone,
    ):
        session = await start_session(desktop)
        async with desktop.stream("GET", f"/api/sessions/{session['id']}/events") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert stream.headers["cache-control"] == "no-store"
            listening = asyncio.create_task(read_events(stream, 3))
            assert (
                await phone.post("/api/pair", json={"token": token_of(session["pairing"]["url"])})
            ).status_code == 200
            registered = await upload(phone, session["id"], jpeg_bytes())
            consented, paired, added = await listening
        assert consented["event"] == "consent.recorded"  # start_session records it
        assert paired["event"] == "phone.paired"
        assert added["event"] == "image.added"
        assert added["data"]["data"]["image"]["id"] == registered.json()["id"]
        assert "urls" not in added["data"]["data"]["image"]  # signed URLs never travel in events


async def test_a_reconnecting_page_gets_exactly_what_it_missed(server):
    headers = {"authorization": f"Bearer {CLINICIAN_TOKEN}"}
    async with (
        httpx.AsyncClient(base_url=server, headers=headers) as desktop,
        httpx.AsyncClient(base_url=server, event_hooks=CsrfToken().hooks()) as phone,
    ):
        session = await start_session(desktop)
        url = f"/api/sessions/{session['id']}/events"
        await phone.post("/api/pair", json={"token": token_of(session["pairing"]["url"])})
        async with desktop.stream("GET", url) as stream:
            [_consented, paired] = await read_events(stream, 2)  # start_session records consent
        # The page is gone; two photos arrive meanwhile.
        first = (await upload(phone, session["id"], jpeg_bytes())).json()
        second = (await upload(phone, session["id"], jpeg_bytes("cat.jpg"))).json()
        async with desktop.stream("GET", url, headers={"Last-Event-ID": paired["id"]}) as stream:
            missed = await read_events(stream, 2)
        assert [e["data"]["data"]["image"]["id"] for e in missed] == [first["id"], second["id"]]
        assert [int(e["id"]) for e in missed] == [int(paired["id"]) + 1, int(paired["id"]) + 2]


async def test_a_phone_cannot_listen_to_another_session(server):
    headers = {"authorization": f"Bearer {CLINICIAN_TOKEN}"}
    async with (
        httpx.AsyncClient(base_url=server, headers=headers) as desktop,
        httpx.AsyncClient(base_url=server, event_hooks=CsrfToken().hooks()) as phone,
    ):
        mine = await start_session(desktop, "enc-a")
        other = await start_session(desktop, "enc-b")
        await phone.post("/api/pair", json={"token": token_of(mine["pairing"]["url"])})
        response = await phone.get(f"/api/sessions/{other['id']}/events")
        assert response.status_code == 404
        anonymous = await httpx.AsyncClient(base_url=server).get(f"/api/sessions/{mine['id']}/events")
        assert anonymous.status_code == 401


async def test_the_in_process_bus_replays_and_waits():
    bus = InProcessEventBus(retain=3)
    for n in range(5):
        await bus.publish("s", "image.deleted", {"imageId": str(n)})
    retained = await bus.read("s", None, timeout=0.1)
    assert [e.data["imageId"] for e in retained] == ["2", "3", "4"]  # the ring keeps the newest
    assert await bus.read("s", "5", timeout=0.05) == []

    async def later() -> None:
        await asyncio.sleep(0.05)
        await bus.publish("s", "image.deleted", {"imageId": "5"})

    waiter = asyncio.create_task(bus.read("s", "5", timeout=2))
    await later()
    assert [e.id for e in await waiter] == ["6"]
    with pytest.raises(ValueError, match="unknown event type"):
        await bus.publish("s", "image.exploded", {})
