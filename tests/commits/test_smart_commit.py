"""A session opened by a SMART App Launch commits into that EHR with the launch's token (issue 13).

The EHR is the SMART EHR double (tests/smart/), which speaks the wire protocol: it issues tokens only through
/authorize and /token (PKCE checked), answers 401 to any other bearer, and validates every write with
fhir.resources. The practice's own FHIR server (CONSULTCAM_EMR_URL) is the FHIR test server, which must
receive nothing. Grants are written straight into the database, as the launch would have written them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.media import Media
from sqlalchemy import text

from consultcam.commits.connectors.base import GrantAccess
from consultcam.commits.grants import SEAL_PURPOSE, author_from_grant, sealed_tokens
from consultcam.kit.sealing import seal, unseal
from consultcam.models import SmartGrant, utcnow
from tests.commits.factories import commit_context
from tests.commits.fhir_server import FhirTestServer
from tests.commits.smart_launch import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, Launched, issue_tokens
from tests.conftest import jpeg_bytes, pair_phone, start_session, upload
from tests.smart.double import EhrDouble

EXPIRED = "The EHR's sign-in for this session has expired. Launch consultcam again from the EHR"


@pytest.fixture
def practice_emr() -> Iterator[FhirTestServer]:
    """The practice's FHIR server (CONSULTCAM_EMR_URL): a launched session must write nothing here."""
    with FhirTestServer() as server:
        yield server


@pytest.fixture
def client_secret() -> str | None:
    return CLIENT_SECRET


@pytest.fixture
def ehr(client_secret: str | None) -> Iterator[EhrDouble]:
    with EhrDouble(client_id=CLIENT_ID, client_secret=client_secret, redirect_uri=REDIRECT_URI) as double:
        yield double


@pytest.fixture
def settings_overrides(practice_emr: FhirTestServer, client_secret: str | None) -> dict[str, Any]:
    values: dict[str, Any] = {"emr_url": f"fhir+{practice_emr.base_url}", "smart_client_id": CLIENT_ID}
    if client_secret:
        values["smart_client_secret"] = client_secret
    return values


# -- what the launch would have done --------------------------------------------------------------------


async def add_grant(
    runtime: Any,
    session_id: str,
    ehr: EhrDouble,
    launched: Launched,
    *,
    access_token: str | None = None,
    refresh_token: str | None = "from the launch",
    expires_at: datetime | None = None,
) -> None:
    """The session's SmartGrant, as the launch writes it (tokens sealed)."""
    tokens = launched.tokens
    access = access_token or tokens["access_token"]
    refresh = tokens.get("refresh_token") if refresh_token == "from the launch" else refresh_token
    async with runtime.unit_of_work() as uow:
        await uow.session.merge(
            SmartGrant(
                session_id=session_id,
                issuer=ehr.iss,
                fhir_base=ehr.iss,
                token_endpoint=tokens["token_endpoint"],
                client_id=CLIENT_ID,
                scope=tokens.get("scope", ""),
                fhir_user=launched.user,
                sealed_tokens=sealed_tokens(runtime.settings, access, refresh),
                access_expires_at=expires_at or utcnow() + timedelta(seconds=int(tokens["expires_in"])),
            )
        )


async def launched_session(clinician: Any, new_client: Any, launched: Launched, photos: int = 1) -> str:
    """A capture session for the launch's patient and encounter, with `photos` photos on it."""
    patient = {"id": launched.patient, "name": "Mere Tester", "nhi": "ZZZ0016", "birthDate": "1980-02-29"}
    session = await start_session(clinician, launched.encounter, patient=patient)
    phone = await pair_phone(new_client, session)
    for _ in range(photos):
        await upload(phone, session["id"], jpeg_bytes())
    return str(session["id"])


async def commit(clinician: Any, session_id: str) -> httpx.Response:
    return await clinician.post(f"/api/sessions/{session_id}/commit", json={"all": True})


async def grant_row(runtime: Any, session_id: str) -> SmartGrant:
    async with runtime.unit_of_work(writes=False) as uow:
        grant = await uow.session.get(SmartGrant, session_id)
        assert grant is not None
        return grant


def writes(ehr: EhrDouble) -> list[dict[str, Any]]:
    """The EHR's write requests (POST, DELETE) other than to its token endpoint."""
    return [r for r in ehr.requests() if r["method"] in ("POST", "DELETE") and "token" not in r["path"]]


def refreshes(ehr: EhrDouble) -> list[dict[str, Any]]:
    return [r for r in ehr.token_requests() if r["grant_type"] == "refresh_token"]


# -- the tests ------------------------------------------------------------------------------------------


async def test_a_launched_session_commits_into_its_ehr_with_the_launch_token(
    ehr, practice_emr, clinician, new_client, runtime
):
    launched = Launched(ehr)
    session_id = await launched_session(clinician, new_client, launched, photos=2)
    await add_grant(runtime, session_id, ehr, launched)

    response = await commit(clinician, session_id)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["connector"] == "smart"
    media = ehr.resources("Media")
    assert len(media) == 2
    for resource in media:
        Media.model_validate(resource)
        assert resource["subject"]["reference"] == f"Patient/{launched.patient}"
        assert resource["encounter"]["reference"] == f"Encounter/{launched.encounter}"
        assert resource["operator"] == {"reference": launched.user}  # the launching user wrote it
    assert sorted(r["resourceId"] for r in body["results"]) == sorted(f"Media/{m['id']}" for m in media)
    sent = writes(ehr)
    assert sent
    assert all(r["headers"].get("authorization", "").startswith("Bearer ") for r in sent)
    assert all(r["status"] < 300 for r in sent)
    assert practice_emr.requests() == []  # not CONSULTCAM_EMR_URL's server
    assert refreshes(ehr) == []  # a valid token is used as it is
    assert launched.tokens["access_token"] not in response.text


async def test_an_ehr_without_media_gets_document_references(
    ehr, practice_emr, clinician, new_client, runtime
):
    ehr.set_media_supported(False)
    launched = Launched(ehr)
    session_id = await launched_session(clinician, new_client, launched)
    await add_grant(runtime, session_id, ehr, launched)

    response = await commit(clinician, session_id)

    assert response.status_code == 200, response.text
    assert ehr.resources("Media") == []
    [document] = ehr.resources("DocumentReference")
    DocumentReference.model_validate(document)
    assert document["subject"]["reference"] == f"Patient/{launched.patient}"
    assert document["author"] == [{"reference": launched.user}]
    assert document["content"][0]["attachment"]["contentType"] == "image/jpeg"
    assert response.json()["results"][0]["resourceId"] == f"DocumentReference/{document['id']}"
    assert practice_emr.requests() == []


@pytest.mark.parametrize("client_secret", [CLIENT_SECRET, None], ids=["confidential", "public"])
async def test_an_expired_access_token_is_refreshed_once_and_kept_sealed(
    ehr, client_secret, clinician, new_client, runtime, caplog
):
    caplog.set_level(logging.DEBUG)
    launched = Launched(ehr)
    old_access, old_refresh = launched.tokens["access_token"], launched.tokens["refresh_token"]
    session_id = await launched_session(clinician, new_client, launched)
    await add_grant(runtime, session_id, ehr, launched, expires_at=utcnow() - timedelta(minutes=1))

    response = await commit(clinician, session_id)

    assert response.status_code == 200, response.text
    assert len(ehr.resources("Media")) == 1
    [refresh] = refreshes(ehr)
    assert refresh["client_auth"] == ("client_secret_basic" if client_secret else "none")
    grant = await grant_row(runtime, session_id)
    tokens = unseal(runtime.settings.secret_key, SEAL_PURPOSE, grant.sealed_tokens)
    assert tokens["access_token"] != old_access
    assert tokens.get("refresh_token")
    assert grant.access_expires_at is not None
    assert grant.access_expires_at > utcnow()
    async with runtime.engine.connect() as connection:  # nothing in the clear at rest
        rows = (await connection.execute(text("SELECT * FROM smart_grants"))).all()
    stored = repr(rows)
    for secret in {old_access, old_refresh, tokens["access_token"], tokens["refresh_token"]}:
        assert secret not in stored
        assert secret not in caplog.text
        assert secret not in response.text


async def expect_launch_expired(clinician: Any, ehr: EhrDouble, session_id: str) -> None:
    """The commit asks for a new launch: 409 LaunchExpired, nothing written, session open, photos kept."""
    response = await commit(clinician, session_id)
    assert response.status_code == 409, response.text
    assert response.json()["error"] == "LaunchExpired"
    assert response.json()["detail"].startswith(EXPIRED)
    assert "your photos are kept" in response.json()["detail"]
    assert [r for r in writes(ehr) if r["status"] < 300] == []  # a refused (401) write saves nothing
    assert ehr.resources("Media") == []
    assert ehr.resources("DocumentReference") == []
    state = (await clinician.get(f"/api/sessions/{session_id}")).json()
    assert state["status"] == "open"
    assert len(state["images"]) == 1
    assert state["commitError"].startswith(EXPIRED)


async def test_without_a_refresh_token_the_gp_is_asked_to_launch_again(
    ehr, practice_emr, clinician, new_client, runtime
):
    launched = Launched(ehr, offline=False)
    assert "refresh_token" not in launched.tokens
    session_id = await launched_session(clinician, new_client, launched)
    await add_grant(runtime, session_id, ehr, launched, expires_at=utcnow() - timedelta(seconds=5))

    await expect_launch_expired(clinician, ehr, session_id)
    assert refreshes(ehr) == []
    assert practice_emr.requests() == []

    # The GP launches again from the EHR: a new grant, and the same photos go in.
    launched.tokens = issue_tokens(ehr, launched.patient, launched.encounter, launched.user, offline=False)
    await add_grant(runtime, session_id, ehr, launched)
    again = await commit(clinician, session_id)
    assert again.status_code == 200, again.text
    assert len(ehr.resources("Media")) == 1


async def test_a_revoked_token_without_a_refresh_token_asks_for_a_new_launch(
    ehr, clinician, new_client, runtime
):
    launched = Launched(ehr, offline=False)
    session_id = await launched_session(clinician, new_client, launched)
    await add_grant(runtime, session_id, ehr, launched)  # not expired by the clock
    ehr.expire_tokens()  # but the EHR answers 401

    await expect_launch_expired(clinician, ehr, session_id)


async def test_a_refused_refresh_asks_for_a_new_launch(ehr, clinician, new_client, runtime):
    launched = Launched(ehr)
    session_id = await launched_session(clinician, new_client, launched)
    await add_grant(
        runtime,
        session_id,
        ehr,
        launched,
        refresh_token="not-a-refresh-token-this-ehr-issued",
        expires_at=utcnow() - timedelta(minutes=5),
    )

    await expect_launch_expired(clinician, ehr, session_id)
    assert len(refreshes(ehr)) == 1  # asked once, refused: not asked again

    launched.tokens = issue_tokens(ehr, launched.patient, launched.encounter, launched.user, offline=True)
    await add_grant(runtime, session_id, ehr, launched)
    again = await commit(clinician, session_id)
    assert again.status_code == 200, again.text


async def test_a_401_during_the_commit_refreshes_once_then_succeeds(ehr, clinician, new_client, runtime):
    launched = Launched(ehr)
    session_id = await launched_session(clinician, new_client, launched, photos=2)
    await add_grant(runtime, session_id, ehr, launched)
    ehr.expire_tokens()  # valid by the clock, refused by the EHR

    response = await commit(clinician, session_id)

    assert response.status_code == 200, response.text
    assert len(ehr.resources("Media")) == 2
    assert len(refreshes(ehr)) == 1
    assert [r["status"] for r in ehr.requests() if r["status"] == 401]  # the 401 happened
    grant = await grant_row(runtime, session_id)
    tokens = unseal(runtime.settings.secret_key, SEAL_PURPOSE, grant.sealed_tokens)
    assert tokens["access_token"] != launched.tokens["access_token"]


async def test_an_ehr_that_is_down_gives_the_usual_failure(ehr, practice_emr, clinician, new_client, runtime):
    launched = Launched(ehr)
    session_id = await launched_session(clinician, new_client, launched)
    await add_grant(runtime, session_id, ehr, launched)
    ehr.stop_answering()

    response = await commit(clinician, session_id)

    assert response.status_code == 502, response.text
    assert response.json()["error"] == "CommitFailed"
    assert "could not be reached" in response.json()["detail"]
    state = (await clinician.get(f"/api/sessions/{session_id}")).json()
    assert state["status"] == "open"
    assert len(state["images"]) == 1
    assert practice_emr.requests() == []


async def test_sessions_without_a_grant_still_use_the_practice_emr(ehr, practice_emr, clinician, new_client):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    await upload(phone, session["id"], jpeg_bytes())

    response = await commit(clinician, session["id"])

    assert response.status_code == 200, response.text
    assert response.json()["connector"] == "fhir"
    assert len(practice_emr.resources()) == 1
    assert ehr.requests() == []


async def test_refreshed_tokens_are_kept_when_the_commit_then_fails(ehr, clinician, new_client, runtime):
    launched = Launched(ehr)
    session_id = await launched_session(clinician, new_client, launched)
    await add_grant(runtime, session_id, ehr, launched, expires_at=utcnow() - timedelta(minutes=1))
    ehr.fail(400, times=1, path_prefix="/fhir/metadata")  # after the refresh, the EHR refuses

    failed = await commit(clinician, session_id)

    assert failed.status_code == 502, failed.text
    grant = await grant_row(runtime, session_id)
    tokens = unseal(runtime.settings.secret_key, SEAL_PURPOSE, grant.sealed_tokens)
    assert tokens["access_token"] != launched.tokens["access_token"]
    assert tokens["refresh_token"] != launched.tokens["refresh_token"]  # the one the refresh gave
    assert len(refreshes(ehr)) == 1

    again = await commit(clinician, session_id)  # the kept token is used as it is

    assert again.status_code == 200, again.text
    assert len(refreshes(ehr)) == 1
    assert len(ehr.resources("Media")) == 1


async def test_a_grant_sealed_under_another_key_asks_for_a_new_launch(ehr, clinician, new_client, runtime):
    launched = Launched(ehr)
    session_id = await launched_session(clinician, new_client, launched)
    await add_grant(runtime, session_id, ehr, launched)
    async with runtime.unit_of_work() as uow:  # CONSULTCAM_SECRET changed since the launch
        grant = await uow.session.get(SmartGrant, session_id)
        assert grant is not None
        grant.sealed_tokens = seal(
            b"another-server-key-0123456789abcdef", SEAL_PURPOSE, {"access_token": "x"}
        )

    await expect_launch_expired(clinician, ehr, session_id)
    assert refreshes(ehr) == []


@pytest.mark.parametrize(
    ("fhir_user", "practitioner_id", "expected"),
    [
        ("Practitioner/7", None, "7"),
        ("https://ehr.example.org/fhir/Practitioner/abc-1", None, "abc-1"),
        ("PractitionerRole/3", None, None),  # not a Practitioner: no operator rather than a wrong one
        ("Patient/5", None, None),
        ("Practitioner/7", "PRV123", "PRV123"),  # the session's own practitioner wins
        (None, None, None),
    ],
)
def test_the_launching_practitioner_is_the_author_when_the_session_names_none(
    fhir_user: str | None, practitioner_id: str | None, expected: str | None
) -> None:
    grant = GrantAccess(
        fhir_base="https://ehr.example.org/fhir",
        token_endpoint="https://ehr.example.org/token",
        client_id=CLIENT_ID,
        access_token="a",
        fhir_user=fhir_user,
    )
    context = author_from_grant(commit_context(practitioner_id=practitioner_id), grant)
    assert context.practitioner_id == expected
    assert "access_token" not in repr(grant)
    assert "'a'" not in repr(grant)
