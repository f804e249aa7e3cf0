"""The desktop page of a SMART-launched session whose EHR sign-in expired (issue 13): the commit dialog asks
the GP to launch again from the EHR, nothing is lost, and after a new launch the same photos go into the EHR.

The grant is written straight into the server's database, as the launch would have written it; the EHR is
the SMART EHR double.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from consultcam.commits.grants import sealed_tokens
from consultcam.config import Settings
from consultcam.models import SmartGrant, utcnow
from tests.commits.smart_launch import CLIENT_ID, REDIRECT_URI, Launched, issue_tokens
from tests.conftest import jpeg_bytes
from tests.e2e.conftest import shot
from tests.e2e.flows import add_photo, record_consent
from tests.e2e.harness import Server
from tests.smart.double import EhrDouble

EXPIRED = (
    "The EHR's sign-in for this session has expired. Launch consultcam again from the EHR for this "
    "patient; your photos are kept."
)


@pytest.fixture
def ehr() -> Iterator[EhrDouble]:
    with EhrDouble(client_id=CLIENT_ID, client_secret=None, redirect_uri=REDIRECT_URI) as double:
        yield double


def write_grant(
    server: Server, secret: str, session_id: str, ehr: EhrDouble, launched: Launched, **when: Any
) -> None:
    """The session's SmartGrant in the server's SQLite database, tokens sealed under its secret."""
    settings = Settings(data_dir=server.data_dir, secret=secret)
    engine = create_engine(f"sqlite:///{server.data_dir / 'consultcam.db'}")
    try:
        with Session(engine) as db, db.begin():
            db.merge(
                SmartGrant(
                    session_id=session_id,
                    issuer=ehr.iss,
                    fhir_base=ehr.iss,
                    token_endpoint=launched.tokens["token_endpoint"],
                    client_id=CLIENT_ID,
                    scope=launched.tokens.get("scope", ""),
                    fhir_user=launched.user,
                    sealed_tokens=sealed_tokens(settings, launched.tokens["access_token"], None),
                    access_expires_at=when.get("expires_at", utcnow() + timedelta(minutes=30)),
                )
            )
    finally:
        engine.dispose()


def test_an_expired_ehr_sign_in_asks_for_a_new_launch_and_keeps_the_photos(
    ehr, server_factory, desktop_factory
) -> None:
    secret = secrets.token_urlsafe(32)
    server = server_factory(
        CONSULTCAM_SMART_CLIENT_ID=CLIENT_ID, CONSULTCAM_SECRET=secret, CONSULTCAM_REQUIRED_METADATA=""
    )
    launched = Launched(ehr, offline=False)  # no refresh token: an expired access token cannot be renewed
    patient = {"id": launched.patient, "name": "Mere Tester", "nhi": "ZZZ0016", "birthDate": "1980-02-29"}
    with server.api() as api:
        created = api.post("/api/sessions", json={"encounterId": launched.encounter, "patient": patient})
        assert created.status_code in (200, 201), created.text
    session_id = created.json()["id"]
    record_consent(server, session_id)
    add_photo(server, session_id, jpeg_bytes(), metadata={"label": "Lesion A"})
    write_grant(server, secret, session_id, ehr, launched, expires_at=utcnow() - timedelta(minutes=1))

    desktop = desktop_factory(server)
    desktop.goto(f"{server.url}/sessions/{session_id}")
    dialog = desktop.get_by_test_id("commit-confirm")
    desktop.get_by_test_id("commit").click()
    dialog.get_by_role("button", name="Commit 1 photo").click()

    error = dialog.locator("#commit-error")
    expect(error).to_have_text(EXPIRED)
    expect(dialog.locator("#commit-dialog-title")).to_have_text("Launch consultcam again from the EHR")
    expect(dialog.locator("#commit-confirm-btn")).to_be_hidden()
    expect(dialog.locator("#commit-dialog-text")).to_be_hidden()  # no "1 photo will be saved…"
    shot(desktop, "smart-commit-launch-expired")
    assert ehr.resources("Media") == []
    dialog.get_by_role("button", name="Close").click()
    expect(desktop.locator("#commit-hint")).to_have_text(EXPIRED)
    expect(desktop.locator(".photo-card, [data-image-id]").first).to_be_visible()  # the photo is still there
    page_text = desktop.content()
    assert launched.tokens["access_token"] not in page_text

    # The GP launches again from the EHR (a new grant for the same session), and commits the same photo.
    launched.tokens = issue_tokens(ehr, launched.patient, launched.encounter, launched.user, offline=False)
    write_grant(server, secret, session_id, ehr, launched)
    desktop.reload()  # as the new launch opens the page again: no old commit shown as "from the phone"
    expect(desktop.locator("#commit-hint")).to_have_text(EXPIRED)
    expect(dialog).to_be_hidden()
    desktop.get_by_test_id("commit").click()
    dialog.get_by_role("button", name="Commit 1 photo").click()
    expect(desktop.get_by_test_id("commit-result")).to_contain_text("1 photo saved")
    [media] = ehr.resources("Media")
    assert media["subject"]["reference"] == f"Patient/{launched.patient}"
    assert media["operator"] == {"reference": launched.user}
