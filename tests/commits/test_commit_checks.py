"""The checks before a commit (issue 5): the metadata the practice requires on every photo, named by photo
number, checked before anything is claimed or written; and who may commit (the phone only when allowed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from consultcam.models import AuditEvent
from tests.conftest import assert_error, jpeg_bytes, pair_phone, start_session, upload

SITE = {"system": "http://snomed.info/sct", "code": "40983000", "display": "Upper arm structure"}
BODY_SITE = {"required_metadata": ("bodySite",)}  # the product default (the tests' settings require none)
PHOTOS = ("fundus-left-eye.jpg", "cat.jpg", "coffee.jpg", "rocket.jpg", "cat.jpg")


def outbox(runtime: Any) -> list[Path]:
    return sorted((runtime.settings.data_dir / "outbox").glob("*.json"))


async def audit_of(runtime: Any, action: str) -> list[AuditEvent]:
    async with runtime.sessionmaker() as db:
        rows = await db.execute(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
        return list(rows.scalars())


async def event_types(runtime: Any, session_id: str) -> list[str]:
    return [e.type for e in await runtime.bus.read(session_id, None, timeout=0)]


async def gallery(
    client: httpx.AsyncClient, session_id: str, metadata: list[dict[str, Any] | None]
) -> list[str]:
    """Upload one photo per entry of `metadata`, in order (photo 1, photo 2, …); returns their ids."""
    ids = []
    for name, meta in zip(PHOTOS, metadata, strict=False):
        response = await upload(client, session_id, jpeg_bytes(name), metadata=meta)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def metadata_missing(response: httpx.Response, detail: str) -> list[dict[str, Any]]:
    """The 422 body: `{error, detail, missing}`, never cached; returns `missing`."""
    assert response.status_code == 422, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"error", "detail", "missing"}, body
    assert body["error"] == "MetadataMissing"
    assert body["detail"] == detail
    return list(body["missing"])


async def assert_nothing_committed(clinician: httpx.AsyncClient, runtime: Any, session_id: str) -> None:
    """No claim, no write: the session is open, every photo ready, nothing in the outbox or the trail."""
    state = (await clinician.get(f"/api/sessions/{session_id}")).json()
    assert state["status"] == "open"
    assert state["commitError"] is None
    assert {image["status"] for image in state["images"]} == {"ready"}
    assert outbox(runtime) == []
    assert await audit_of(runtime, "commit.started") == []
    assert "commit.started" not in await event_types(runtime, session_id)


# --- required metadata ----------------------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", [BODY_SITE])
async def test_photos_without_a_body_site_are_named_and_nothing_is_written(clinician, new_client, runtime):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    site = {"bodySite": SITE}
    ids = await gallery(phone, session["id"], [site, {"label": "Rash"}, site, site, None])

    response = await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})

    missing = metadata_missing(
        response, "Photo 2 and photo 5 need a body site: add it on the desktop, then commit."
    )
    assert missing == [
        {"imageId": ids[1], "fields": ["bodySite"]},
        {"imageId": ids[4], "fields": ["bodySite"]},
    ]
    await assert_nothing_committed(clinician, runtime, session["id"])

    # Once the gaps are filled on the desktop, the same commit goes through.
    for image_id in (ids[1], ids[4]):
        patched = await clinician.patch(
            f"/api/sessions/{session['id']}/images/{image_id}", json={"metadata": site}
        )
        assert patched.status_code == 200, patched.text
    committed = await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})
    assert committed.status_code == 200, committed.text
    assert [r["status"] for r in committed.json()["results"]] == ["committed"] * 5
    assert len(outbox(runtime)) == 1


@pytest.mark.parametrize("settings_overrides", [BODY_SITE])
async def test_one_photo_missing_is_said_in_the_singular(clinician, runtime):
    session = await start_session(clinician)
    [image_id] = await gallery(clinician, session["id"], [{"laterality": "left", "view": "close-up"}])
    response = await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})
    missing = metadata_missing(response, "Photo 1 needs a body site: add it on the desktop, then commit.")
    assert missing == [{"imageId": image_id, "fields": ["bodySite"]}]
    await assert_nothing_committed(clinician, runtime, session["id"])


@pytest.mark.parametrize("settings_overrides", [{"required_metadata": ("bodySite", "laterality", "label")}])
async def test_every_required_field_is_checked_and_each_gap_named(clinician, runtime):
    session = await start_session(clinician)
    full = {"bodySite": SITE, "laterality": "left", "label": "Lesion A"}
    ids = await gallery(
        clinician,
        session["id"],
        [
            full,
            {"bodySite": SITE, "label": "Lesion B"},
            full,
            {"laterality": "right"},
            {**full, "label": " "},
        ],
    )
    response = await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})
    missing = metadata_missing(
        response,
        "Photo 4 needs a body site; photo 2 needs a side; photo 4 and photo 5 need a label: add them on the "
        "desktop, then commit.",
    )
    assert missing == [
        {"imageId": ids[1], "fields": ["laterality"]},
        {"imageId": ids[3], "fields": ["bodySite", "label"]},
        {"imageId": ids[4], "fields": ["label"]},
    ]
    await assert_nothing_committed(clinician, runtime, session["id"])


@pytest.mark.parametrize("settings_overrides", [BODY_SITE])
async def test_only_the_chosen_photos_are_checked_and_keep_their_gallery_numbers(clinician, runtime):
    session = await start_session(clinician)
    site = {"bodySite": SITE}
    ids = await gallery(clinician, session["id"], [None, site, None, site])

    refused = await clinician.post(
        f"/api/sessions/{session['id']}/commit", json={"imageIds": [ids[3], ids[2]]}
    )
    missing = metadata_missing(refused, "Photo 3 needs a body site: add it on the desktop, then commit.")
    assert missing == [{"imageId": ids[2], "fields": ["bodySite"]}]
    await assert_nothing_committed(clinician, runtime, session["id"])

    chosen = await clinician.post(
        f"/api/sessions/{session['id']}/commit", json={"imageIds": [ids[1], ids[3]]}
    )
    assert chosen.status_code == 200, chosen.text  # photos 1 and 3 lack a body site but are left out
    results = {r["imageId"]: r["status"] for r in chosen.json()["results"]}
    assert results == {ids[0]: "skipped", ids[1]: "committed", ids[2]: "skipped", ids[3]: "committed"}


@pytest.mark.parametrize("settings_overrides", [{"required_metadata": ()}])
async def test_nothing_required_commits_bare_photos(clinician):
    session = await start_session(clinician)
    assert session["requiredMetadata"] == []
    await gallery(clinician, session["id"], [None, None])
    response = await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("settings_overrides", [BODY_SITE])
async def test_the_session_tells_the_pages_what_is_required(clinician, new_client):
    session = await start_session(clinician)
    assert session["requiredMetadata"] == ["bodySite"]
    phone = new_client()
    paired = await phone.post("/api/pair", json={"token": session["pairing"]["url"].rsplit("/m/", 1)[1]})
    assert paired.json()["captureSettings"]["requiredMetadata"] == ["bodySite"]


# --- who commits ------------------------------------------------------------------------------------------


async def test_a_phone_cannot_commit_by_default(clinician, new_client, runtime):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    await gallery(phone, session["id"], [{"bodySite": SITE}])

    response = await phone.post(f"/api/sessions/{session['id']}/commit", json={"all": True})

    assert_error(response, 403, "PhoneCannotCommit", "clinician", "desktop")
    await assert_nothing_committed(clinician, runtime, session["id"])
    assert (await clinician.get(f"/api/sessions/{session['id']}")).json()["phoneCanCommit"] is False


@pytest.mark.parametrize(
    "settings_overrides", [{"phone_can_commit": True, "required_metadata": ("bodySite",)}]
)
async def test_with_the_setting_on_the_phone_commits_with_the_same_checks(clinician, new_client, runtime):
    session = await start_session(clinician)
    assert session["phoneCanCommit"] is True
    phone = new_client()
    paired = await phone.post("/api/pair", json={"token": session["pairing"]["url"].rsplit("/m/", 1)[1]})
    assert paired.json()["captureSettings"]["phoneCanCommit"] is True
    ids = await gallery(phone, session["id"], [{"bodySite": SITE}, None])

    refused = await phone.post(f"/api/sessions/{session['id']}/commit", json={"all": True})
    assert metadata_missing(refused, "Photo 2 needs a body site: add it on the desktop, then commit.") == [
        {"imageId": ids[1], "fields": ["bodySite"]}
    ]
    await assert_nothing_committed(clinician, runtime, session["id"])

    committed = await phone.post(f"/api/sessions/{session['id']}/commit", json={"imageIds": [ids[0]]})

    assert committed.status_code == 200, committed.text
    assert committed.json()["status"] == "committed"
    [path] = outbox(runtime)
    assert ids[0] in path.read_text()
    # The trail says a phone committed, and which; the desktop is told as for its own commit.
    phone_id = paired.json()["session"]["phone"]["id"]
    for action in ("commit.started", "commit.succeeded"):
        [row] = await audit_of(runtime, action)
        assert (row.actor_type, row.actor_id) == ("phone", phone_id)
    [started] = await audit_of(runtime, "commit.started")
    assert started.detail["committed_by"] == "phone"
    types = await event_types(runtime, session["id"])
    assert types.index("commit.started") < types.index("session.committed")
    assert (await clinician.get(f"/api/sessions/{session['id']}")).json()["status"] == "committed"


@pytest.mark.parametrize("settings_overrides", [{"phone_can_commit": True}])
async def test_even_allowed_a_phone_commits_only_its_own_session(clinician, new_client, runtime):
    mine = await start_session(clinician, "enc-a")
    other = await start_session(clinician, "enc-b")
    await gallery(clinician, other["id"], [None])
    phone = await pair_phone(new_client, mine)
    assert_error(
        await phone.post(f"/api/sessions/{other['id']}/commit", json={"all": True}), 404, "SessionNotFound"
    )
    assert (await clinician.get(f"/api/sessions/{other['id']}")).json()["status"] == "open"
    assert outbox(runtime) == []


async def test_the_clinicians_commit_is_audited_as_the_clinicians(clinician, runtime):
    session = await start_session(clinician)
    await gallery(clinician, session["id"], [None])
    assert (
        await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})
    ).status_code == 200
    [started] = await audit_of(runtime, "commit.started")
    assert (started.actor_type, started.actor_id, started.detail["committed_by"]) == (
        "clinician",
        "clinician:embedded",
        "clinician",
    )
