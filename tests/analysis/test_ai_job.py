"""The AI description job through the real app (both database backends), against a local chat-completions
server: off by default, pending → running → done or failed, live on the desktop's event stream, never
written to a deleted or committed photo, never put into the record by itself."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from consultcam.analysis.prompt import PROMPT_VERSION
from consultcam.app import create_app
from tests.analysis.chat_server import DESCRIPTION, SERVED_MODEL, Reply, answer, check_request, serving
from tests.analysis.conftest import consented_session
from tests.conftest import (
    CLINICIAN_TOKEN,
    PATIENT,
    jpeg_bytes,
    pair_phone,
    phone_photo,
    upload,
)

MODEL = "qwen2.5-vl-test"
API_KEY = "sk-local-0123456789abcdef"
SITE = {"system": "http://snomed.info/sct", "code": "368208006", "display": "Left upper arm structure"}
TASK = "consultcam.analysis.describe"


@pytest.fixture
def settings_overrides(chat_server) -> dict[str, Any]:
    """The app configured for the local chat-completions server."""
    return {
        "ai_base_url": chat_server.url,
        "ai_model": MODEL,
        "ai_api_key": API_KEY,
        "ai_timeout_seconds": 5,
        "ai_max_retries": 2,
    }


def jobs_finished() -> float:
    """Description jobs run to the end in this process (the Prometheus counter /metrics shows)."""
    return sum(
        REGISTRY.get_sample_value("consultcam_jobs_total", {"task": TASK, "outcome": outcome}) or 0
        for outcome in ("ok", "error")
    )


async def wait_for_jobs(before: float, count: int = 1, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while jobs_finished() < before + count:
        assert time.monotonic() < deadline, "the description job did not finish"
        await asyncio.sleep(0.02)


async def photo_of(client: httpx.AsyncClient, session_id: str, image_id: str) -> dict[str, Any]:
    images = (await client.get(f"/api/sessions/{session_id}/images")).json()["images"]
    [image] = [image for image in images if image["id"] == image_id]
    return image


async def analysis_settled(client: httpx.AsyncClient, session_id: str, image_id: str) -> dict[str, Any]:
    """The image's analysis once it is done or failed."""
    deadline = time.monotonic() + 15
    while True:
        analysis = (await photo_of(client, session_id, image_id))["analysis"]
        if analysis["status"] in ("done", "failed"):
            return analysis
        assert time.monotonic() < deadline, analysis
        await asyncio.sleep(0.05)


async def events_of(runtime: Any, session_id: str) -> list[Any]:
    return await runtime.bus.read(session_id, None, timeout=0)


def outbox(runtime: Any) -> list[Path]:
    return sorted((runtime.settings.data_dir / "outbox").glob("*.json"))


@pytest.mark.parametrize("settings_overrides", [{}])
async def test_analysis_is_disabled_by_default_and_no_job_runs(clinician, new_client, runtime):
    before = jobs_finished()
    session = await consented_session(clinician)
    phone = await pair_phone(new_client, session)

    registered = await upload(phone, session["id"], jpeg_bytes(), metadata={"bodySite": SITE})

    assert registered.status_code == 201, registered.text
    assert registered.json()["analysis"] == {"status": "disabled"}
    await asyncio.sleep(0.3)
    assert (await photo_of(clinician, session["id"], registered.json()["id"]))["analysis"] == {
        "status": "disabled"
    }
    assert jobs_finished() == before
    assert "image.analysed" not in [e.type for e in await events_of(runtime, session["id"])]


async def test_a_photo_is_described_and_the_desktop_sees_it_on_its_event_stream(settings, chat_server):
    """Over real HTTP: consultcam served by uvicorn, the desktop reading Server-Sent Events."""
    headers = {"authorization": f"Bearer {CLINICIAN_TOKEN}"}
    async with (
        serving(create_app(settings)) as origin,
        httpx.AsyncClient(base_url=origin, headers=headers) as desktop,
        httpx.AsyncClient(base_url=origin) as phone,
    ):
        session = await consented_session(desktop)
        paired = await phone.post("/api/pair", json={"token": session["pairing"]["url"].rsplit("/m/", 1)[1]})
        assert paired.status_code == 200
        registered = await upload(phone, session["id"], phone_photo(), metadata={"bodySite": SITE})
        assert registered.status_code == 201, registered.text
        image_id = registered.json()["id"]
        assert registered.json()["analysis"] == {"status": "pending"}

        async with desktop.stream("GET", f"/api/sessions/{session['id']}/events") as stream:
            analysed = await asyncio.wait_for(next_event(stream, "image.analysed"), 15)

        listed = await photo_of(desktop, session["id"], image_id)

    image = analysed["data"]["data"]["image"]  # the frame: {type, sessionId, at, data}
    assert image["id"] == image_id
    assert "urls" not in image
    analysis = image["analysis"]
    assert analysis["status"] == "done"
    assert analysis["description"] == DESCRIPTION
    assert analysis["model"] == SERVED_MODEL
    assert analysis["promptVersion"] == PROMPT_VERSION
    assert datetime.fromisoformat(analysis["analysedAt"]).tzinfo is not None
    assert listed["analysis"] == analysis
    assert "notes" not in listed["metadata"]  # the clinician has not accepted it: not in the record's fields
    [received] = chat_server.requests
    sent = check_request(
        received,
        model=MODEL,
        api_key=API_KEY,
        forbidden=(
            PATIENT["name"],
            PATIENT["nhi"],
            PATIENT["birthDate"],
            PATIENT["id"],
            session["id"],
            image_id,
            session["encounterId"],
            SITE["code"],
            SITE["display"],
            "TestPhone",
        ),
    )
    assert max(sent.size) == 1024
    assert sent.height > sent.width  # the stored, upright copy (the phone's EXIF orientation 6 applied)


async def next_event(response: httpx.Response, wanted: str) -> dict[str, Any]:
    """The first SSE event of type `wanted` on a streaming response (its `data` parsed)."""
    event: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if not line:
            if event.get("event") == wanted:
                return event
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            event[name] = json.loads(value) if name == "data" else value.strip()
    raise AssertionError(f"the stream ended without {wanted}")


async def test_the_status_goes_pending_then_running_then_done(clinician, new_client, chat_server):
    chat_server.then(Reply(delay=1.0, body=answer().body))  # answered after a second
    session = await consented_session(clinician)
    phone = await pair_phone(new_client, session)
    registered = (await upload(phone, session["id"], jpeg_bytes(), metadata={"bodySite": SITE})).json()
    assert registered["analysis"]["status"] == "pending"

    await chat_server.wait_for(1)
    assert (await photo_of(clinician, session["id"], registered["id"]))["analysis"] == {"status": "running"}
    analysis = await analysis_settled(clinician, session["id"], registered["id"])
    assert analysis["status"] == "done"


async def test_a_rate_limited_request_is_retried_by_the_job_and_done(clinician, new_client, chat_server):
    chat_server.then(Reply(429, {"error": {"message": "Too many requests"}}, {"Retry-After": "1"}))
    session = await consented_session(clinician)
    phone = await pair_phone(new_client, session)
    registered = (await upload(phone, session["id"], jpeg_bytes(), metadata={"bodySite": SITE})).json()

    analysis = await analysis_settled(clinician, session["id"], registered["id"])

    assert analysis["status"] == "done"
    assert len(chat_server.requests) == 2


async def test_a_rejected_request_is_stored_as_failed_with_its_reason_and_published(
    clinician, new_client, chat_server, runtime
):
    chat_server.then(Reply(400, {"error": {"message": "image_url must be a data URL"}}))
    session = await consented_session(clinician)
    phone = await pair_phone(new_client, session)
    registered = (await upload(phone, session["id"], jpeg_bytes(), metadata={"bodySite": SITE})).json()

    analysis = await analysis_settled(clinician, session["id"], registered["id"])

    assert analysis["status"] == "failed"
    assert (
        analysis["reason"] == "The AI service rejected the request (HTTP 400: image_url must be a data URL)."
    )
    assert analysis["model"] == MODEL
    assert analysis["promptVersion"] == PROMPT_VERSION
    assert "description" not in analysis
    assert len(chat_server.requests) == 1  # a 4xx is reported, not retried
    [event] = [e for e in await events_of(runtime, session["id"]) if e.type == "image.analysed"]
    assert event.data["image"]["analysis"] == analysis


async def test_nothing_is_written_to_a_photo_deleted_while_it_was_described(
    clinician, new_client, chat_server, runtime
):
    chat_server.then(Reply(delay=1.0, body={"choices": [{"message": {"content": DESCRIPTION}}]}))
    session = await consented_session(clinician)
    phone = await pair_phone(new_client, session)
    registered = (await upload(phone, session["id"], jpeg_bytes(), metadata={"bodySite": SITE})).json()
    before = jobs_finished()
    await chat_server.wait_for(1)

    deleted = await clinician.delete(f"/api/sessions/{session['id']}/images/{registered['id']}")
    assert deleted.status_code == 204
    await wait_for_jobs(before)

    types = [e.type for e in await events_of(runtime, session["id"])]
    assert "image.deleted" in types
    assert "image.analysed" not in types


async def test_the_record_gets_the_ai_text_only_when_the_clinician_puts_it_in_the_notes(
    clinician, new_client, chat_server, runtime
):
    session = await consented_session(clinician)
    phone = await pair_phone(new_client, session)
    first = (await upload(phone, session["id"], jpeg_bytes(), metadata={"bodySite": SITE})).json()
    second = (
        await upload(phone, session["id"], jpeg_bytes("coffee.jpg"), metadata={"bodySite": SITE})
    ).json()
    for image in (first, second):
        assert (await analysis_settled(clinician, session["id"], image["id"]))["status"] == "done"
    # The clinician accepts the first description (the page copies it into the notes); not the second.
    accepted = await clinician.patch(
        f"/api/sessions/{session['id']}/images/{first['id']}", json={"metadata": {"notes": DESCRIPTION}}
    )
    assert accepted.status_code == 200, accepted.text

    committed = await clinician.post(f"/api/sessions/{session['id']}/commit", json={})

    assert committed.status_code == 200, committed.text
    [path] = outbox(runtime)
    bundle = json.loads(path.read_text())
    media = {e["resource"]["identifier"][0]["value"]: json.dumps(e["resource"]) for e in bundle["entry"]}
    assert DESCRIPTION in media[first["id"]]
    assert DESCRIPTION not in media[second["id"]]
    assert SERVED_MODEL not in path.read_text()


async def test_a_description_arriving_after_the_commit_is_dropped(
    clinician, new_client, chat_server, runtime
):
    chat_server.then(Reply(delay=1.0, body={"choices": [{"message": {"content": DESCRIPTION}}]}))
    session = await consented_session(clinician)
    phone = await pair_phone(new_client, session)
    registered = (await upload(phone, session["id"], jpeg_bytes(), metadata={"bodySite": SITE})).json()
    before = jobs_finished()
    await chat_server.wait_for(1)

    committed = await clinician.post(f"/api/sessions/{session['id']}/commit", json={})
    assert committed.status_code == 200, committed.text
    await wait_for_jobs(before)

    assert DESCRIPTION not in outbox(runtime)[0].read_text()
    assert "image.analysed" not in [e.type for e in await events_of(runtime, session["id"])]
    assert registered["id"] in committed.text
