"""The AI description job through the real app (both database backends), against a local chat-completions
server: off by default, pending → running → done or failed, live on the desktop's event stream, never
written to a deleted or committed photo, never put into the record by itself."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, update

from consultcam.analysis.prompt import PROMPT_VERSION
from consultcam.analysis.service import STUCK_AFTER_MIN, endpoint_host, stuck_after
from consultcam.app import create_app
from consultcam.models import AuditEvent, ClinicalImage, utcnow
from consultcam.retention.sweeper import sweep
from tests.analysis.chat_server import DESCRIPTION, SERVED_MODEL, Reply, answer, check_request
from tests.conftest import (
    CLINICIAN_TOKEN,
    PATIENT,
    CsrfToken,
    jpeg_bytes,
    next_event,
    pair_phone,
    phone_photo,
    serving,
    start_session,
    token_of,
    upload,
)

MODEL = "qwen2.5-vl-test"
API_KEY = "sk-local-0123456789abcdef"
SITE = {"system": "http://snomed.info/sct", "code": "40983000", "display": "Upper arm structure"}
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
    session = await start_session(clinician)
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
        httpx.AsyncClient(base_url=origin, event_hooks=CsrfToken().hooks()) as phone,
    ):
        session = await start_session(desktop)
        paired = await phone.post("/api/pair", json={"token": token_of(session["pairing"]["url"])})
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


async def test_the_status_goes_pending_then_running_then_done(clinician, new_client, chat_server):
    chat_server.then(Reply(delay=1.0, body=answer().body))  # answered after a second
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    registered = (await upload(phone, session["id"], jpeg_bytes(), metadata={"bodySite": SITE})).json()
    assert registered["analysis"]["status"] == "pending"

    await chat_server.wait_for(1)
    running = (await photo_of(clinician, session["id"], registered["id"]))["analysis"]
    assert running.keys() == {"status", "startedAt"}
    assert running["status"] == "running"
    assert datetime.fromisoformat(running["startedAt"]).tzinfo is not None
    analysis = await analysis_settled(clinician, session["id"], registered["id"])
    assert analysis["status"] == "done"


async def test_a_rate_limited_request_is_retried_by_the_job_and_done(clinician, new_client, chat_server):
    chat_server.then(Reply(429, {"error": {"message": "Too many requests"}}, {"Retry-After": "1"}))
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    registered = (await upload(phone, session["id"], jpeg_bytes(), metadata={"bodySite": SITE})).json()

    analysis = await analysis_settled(clinician, session["id"], registered["id"])

    assert analysis["status"] == "done"
    assert len(chat_server.requests) == 2


async def test_a_rejected_request_is_stored_as_failed_with_its_reason_and_published(
    clinician, new_client, chat_server, runtime
):
    chat_server.then(Reply(400, {"error": {"message": "image_url must be a data URL"}}))
    session = await start_session(clinician)
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
    session = await start_session(clinician)
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
    session = await start_session(clinician)
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

    committed = await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})

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
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    registered = (await upload(phone, session["id"], jpeg_bytes(), metadata={"bodySite": SITE})).json()
    before = jobs_finished()
    await chat_server.wait_for(1)

    committed = await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})
    assert committed.status_code == 200, committed.text
    await wait_for_jobs(before)

    assert DESCRIPTION not in outbox(runtime)[0].read_text()
    assert "image.analysed" not in [e.type for e in await events_of(runtime, session["id"])]
    assert registered["id"] in committed.text


async def test_sending_a_photo_is_audited_with_the_model_and_host_never_the_key(
    clinician, new_client, chat_server, runtime
):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    registered = (await upload(phone, session["id"], jpeg_bytes(), metadata={"bodySite": SITE})).json()
    assert (await analysis_settled(clinician, session["id"], registered["id"]))["status"] == "done"

    async with runtime.sessionmaker() as db:
        [event] = (
            (await db.execute(select(AuditEvent).where(AuditEvent.action == "image.sent-for-analysis")))
            .scalars()
            .all()
        )
    assert (event.actor_type, event.actor_id) == ("system", "ai-description")
    assert (event.session_id, event.image_id) == (session["id"], registered["id"])
    assert event.detail["model"] == MODEL
    assert event.detail["endpoint_host"] == chat_server.url.split("://")[1].split("/")[0]  # 127.0.0.1:port
    assert event.detail["prompt_version"] == PROMPT_VERSION
    url = chat_server.requests[0].json["messages"][1]["content"][1]["image_url"]["url"]
    assert event.detail["size_bytes"] == len(base64.b64decode(url.split(",", 1)[1]))  # the JPEG as sent
    assert API_KEY not in json.dumps(event.detail)
    assert "/v1" not in json.dumps(event.detail)  # the host only, not the URL


def test_the_audit_names_the_endpoint_by_its_host_only():
    assert endpoint_host("https://api.openai.com/v1") == "api.openai.com"
    assert endpoint_host("https://user:s3cret@ai.practice.internal:8443/v1") == "ai.practice.internal:8443"


@pytest.mark.parametrize("settings_overrides", [{}])
async def test_nothing_is_audited_as_sent_when_analysis_is_off(clinician, new_client, runtime):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    assert (await upload(phone, session["id"], jpeg_bytes())).status_code == 201
    async with runtime.sessionmaker() as db:
        actions = (await db.execute(select(AuditEvent.action))).scalars().all()
    assert "image.uploaded" in actions
    assert "image.sent-for-analysis" not in actions


async def test_the_sweeper_fails_a_description_that_never_finishes_and_tells_the_desktop(
    clinician, new_client, chat_server, runtime
):
    """A job still running past the bound (here: a service that answers only after the sweep) is marked
    failed with a reason and published; the answer that comes afterwards is dropped."""
    chat_server.then(Reply(delay=1.5, body=answer().body))
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    registered = (await upload(phone, session["id"], jpeg_bytes(), metadata={"bodySite": SITE})).json()
    before = jobs_finished()
    await chat_server.wait_for(1)
    bound = stuck_after(runtime.settings)
    assert bound == STUCK_AFTER_MIN  # 5 s x 3 tries + 2 x 60 s + 60 s is well under 15 minutes

    assert (
        await sweep(runtime.unit_of_work, runtime, now=utcnow() + bound - timedelta(minutes=1))
    ).stuck_analyses == 0
    report = await sweep(runtime.unit_of_work, runtime, now=utcnow() + bound + timedelta(seconds=1))

    assert report.stuck_analyses == 1
    assert report.errors == []
    analysis = (await photo_of(clinician, session["id"], registered["id"]))["analysis"]
    assert analysis["status"] == "failed"
    assert analysis["reason"].startswith("The description did not finish")
    assert analysis["model"] == MODEL
    assert analysis["promptVersion"] == PROMPT_VERSION
    [event] = [e for e in await events_of(runtime, session["id"]) if e.type == "image.analysed"]
    assert event.data["image"]["analysis"] == analysis
    await wait_for_jobs(before)  # the late answer arrives and is dropped
    assert (await photo_of(clinician, session["id"], registered["id"]))["analysis"] == analysis
    assert len([e for e in await events_of(runtime, session["id"]) if e.type == "image.analysed"]) == 1
    assert (await sweep(runtime.unit_of_work, runtime, now=utcnow() + bound * 2)).stuck_analyses == 0


@pytest.mark.parametrize("settings_overrides", [{}])
async def test_the_sweeper_fails_a_pending_description_even_once_ai_is_switched_off(
    clinician, new_client, runtime
):
    """A photo registered while AI was on, whose job was lost with the process that held the in-memory
    queue; the process came back without AI. Committed photos and fresh pending ones are left alone."""
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    lost = (await upload(phone, session["id"], jpeg_bytes())).json()
    recent = (await upload(phone, session["id"], jpeg_bytes("coffee.jpg"))).json()
    bound = stuck_after(runtime.settings)
    async with runtime.unit_of_work() as uow:
        await uow.session.execute(update(ClinicalImage).values(analysis={"status": "pending"}))
        await uow.session.execute(
            update(ClinicalImage)
            .where(ClinicalImage.id == lost["id"])
            .values(registered_at=utcnow() - bound - timedelta(seconds=5))
        )

    report = await sweep(runtime.unit_of_work, runtime)

    assert report.stuck_analyses == 1
    failed = (await photo_of(clinician, session["id"], lost["id"]))["analysis"]
    assert failed["status"] == "failed"
    assert "did not finish" in failed["reason"]
    assert "model" not in failed  # none was configured, none is made up
    assert (await photo_of(clinician, session["id"], recent["id"]))["analysis"] == {"status": "pending"}
    [event] = [e for e in await events_of(runtime, session["id"]) if e.type == "image.analysed"]
    assert event.data["image"]["id"] == lost["id"]
