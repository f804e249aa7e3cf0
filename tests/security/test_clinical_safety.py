"""Clinical safety (issue 10): what reaches the record must be true. Attacks on a running server (uvicorn,
real HTTP) by a careless or hostile client: body-site words that contradict their code or side, codes that
are not body sites, identifiers that could never be committed, capture times from a wrong clock, and
absurd numbers in the edits. The export connector's Bundle file is read back to see what the record gets.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from pydantic import ValidationError
from sqlalchemy import update

from consultcam.app import create_app
from consultcam.config import PRACTICE_TIMEZONE, Settings
from consultcam.models import ClinicalImage
from consultcam.terminology import is_snomed_concept_id
from tests.conftest import (
    CLINICIAN_TOKEN,
    PATIENT,
    CsrfToken,
    assert_error,
    jpeg_bytes,
    serving,
    start_session,
    token_of,
    upload,
)

SNOMED = "http://snomed.info/sct"
FOREARM = "14975008"  # Forearm structure, in the packaged list
MYOCARDIAL_INFARCTION = "22298006"  # a disorder: a real, well-formed SNOMED CT id that is no body site
NO_SUCH_CONCEPT = "9876543211006"  # well-formed (partition 00, Verhoeff check digit) but never issued
AXILLA = "91470000"  # Axillary region structure: not packaged, added by a practice's extension file
#: "Tomorrow" where the practice is (the server checks birth dates in Pacific/Auckland, ahead of UTC).
NZ_TOMORROW = datetime.now(PRACTICE_TIMEZONE).date() + timedelta(days=1)


class Server:
    """A consultcam served over real HTTP, its runtime (for the database and the outbox), and clients."""

    def __init__(self, origin: str, runtime: Any) -> None:
        self.origin = origin
        self.runtime = runtime
        self.clinician = httpx.AsyncClient(
            base_url=origin, headers={"authorization": f"Bearer {CLINICIAN_TOKEN}"}
        )
        # The phone page's cookie and CSRF token (api.js), as the phone's browser sends them.
        self.phone = httpx.AsyncClient(base_url=origin, event_hooks=CsrfToken().hooks())

    async def session(self, encounter: str = "enc-1") -> dict[str, Any]:
        """An open session with consent recorded and this server's phone paired."""
        session = await start_session(self.clinician, encounter)
        paired = await self.phone.post("/api/pair", json={"token": token_of(session["pairing"]["url"])})
        assert paired.status_code == 200, paired.text
        return session

    async def photo(self, session: dict[str, Any], metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await upload(self.phone, session["id"], jpeg_bytes("coffee.jpg"), metadata=metadata)
        assert response.status_code == 201, response.text
        return response.json()

    async def commit(self, session: dict[str, Any]) -> dict[str, Any]:
        """Commit every photo through the export connector; the Bundle it wrote."""
        response = await self.clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})
        assert response.status_code == 200, response.text
        [path] = sorted((self.runtime.settings.data_dir / "outbox").glob("*.json"))
        return json.loads(path.read_text(encoding="utf-8"))

    async def store_metadata(self, image_id: str, **values: Any) -> None:
        """Write a row as an older consultcam (or a direct database edit) left it, past the API's checks."""
        async with self.runtime.unit_of_work() as uow:
            await uow.session.execute(
                update(ClinicalImage).where(ClinicalImage.id == image_id).values(**values)
            )


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[Server]:
    app = create_app(settings)
    async with serving(app) as origin:
        srv = Server(origin, app.state.runtime)
        try:
            yield srv
        finally:
            await srv.clinician.aclose()
            await srv.phone.aclose()


def words_of(bundle: dict[str, Any]) -> str:
    """Every piece of text in the Bundle but the photo's bytes, for "the record never says X" checks."""
    resources = [entry["resource"] for entry in bundle["entry"]]
    for resource in resources:
        resource["content"] = {k: v for k, v in resource["content"].items() if k != "data"}
    return json.dumps(resources)


def sites_url(session: dict[str, Any], image: dict[str, Any]) -> str:
    return f"/api/sessions/{session['id']}/images/{image['id']}"


# -- body sites: the server owns the terms -------------------------------------------------------------


async def test_words_that_contradict_the_code_and_side_never_reach_the_record(server: Server) -> None:
    session = await server.session()
    lying = {
        "bodySite": {"system": SNOMED, "code": FOREARM, "display": "Right forearm"},
        "laterality": "left",
    }

    refused = await upload(server.phone, session["id"], jpeg_bytes("coffee.jpg"), metadata=lying)
    body = assert_error(refused, 422, "InvalidRequest", "Right forearm", "Forearm structure")
    assert "/api/terminology/body-sites" in body["detail"] or "code alone" in body["detail"]

    image = await server.photo(session)
    patched = await server.clinician.patch(sites_url(session, image), json={"metadata": lying})
    assert_error(patched, 422, "InvalidRequest", "Right forearm")
    assert (await server.clinician.get(sites_url(session, image))).json()["metadata"] == {}

    # The code alone (or with its own term) is accepted; the stored words are the data file's.
    coded = {"bodySite": {"code": FOREARM}, "laterality": "left"}
    patched = await server.clinician.patch(sites_url(session, image), json={"metadata": coded})
    assert patched.status_code == 200, patched.text
    assert patched.json()["metadata"]["bodySite"] == {
        "system": SNOMED,
        "code": FOREARM,
        "display": "Forearm structure",
    }

    archive = await server.clinician.get(f"/api/sessions/{session['id']}/download")
    assert archive.status_code == 200, archive.text
    assert zipfile.ZipFile(io.BytesIO(archive.content)).namelist() == ["01-left-forearm.jpg"]

    bundle = await server.commit(session)
    [media] = [entry["resource"] for entry in bundle["entry"]]
    assert media["bodySite"]["text"] == "Left forearm structure"
    assert media["bodySite"]["coding"][0] == {
        "system": SNOMED,
        "code": FOREARM,
        "display": "Forearm structure",
    }
    assert media["bodySite"]["coding"][1]["code"] == f"{FOREARM}:272741003=7771000"
    assert "Right" not in words_of(bundle)


@pytest.mark.parametrize("code", [MYOCARDIAL_INFARCTION, NO_SUCH_CONCEPT], ids=["disorder", "never-issued"])
async def test_a_code_outside_the_list_is_refused_and_says_where_to_pick_one(
    server: Server, code: str
) -> None:
    assert is_snomed_concept_id(code)  # well-formed: only the list can tell it is no body site
    session = await server.session()
    site = {"bodySite": {"system": SNOMED, "code": code, "display": "Forearm structure"}}

    refused = await upload(server.phone, session["id"], jpeg_bytes("coffee.jpg"), metadata=site)
    assert_error(refused, 422, "InvalidRequest", code, "GET /api/terminology/body-sites")
    image = await server.photo(session)
    patched = await server.clinician.patch(sites_url(session, image), json={"metadata": site})
    assert_error(patched, 422, "InvalidRequest", code, "GET /api/terminology/body-sites")
    assert (await server.clinician.get(sites_url(session, image))).json()["metadata"] == {}


@pytest.mark.parametrize(
    "metadata",
    [{"laterality": "LEFT"}, {"laterality": "both"}, {"view": "lateral"}, {"view": "Close-up"}],
    ids=["side-case", "side-word", "view-unknown", "view-display"],
)
async def test_laterality_and_view_take_only_their_defined_values(
    server: Server, metadata: dict[str, Any]
) -> None:
    session = await server.session()
    image = await server.photo(session)
    patched = await server.clinician.patch(sites_url(session, image), json={"metadata": metadata})
    assert_error(patched, 422, "InvalidRequest", next(iter(metadata)))


async def test_rows_stored_with_client_words_commit_with_the_data_files_words(server: Server) -> None:
    """A photo labelled before this fix keeps the words its client sent: what is shown and committed comes
    from the code, and a stored code that is no body site stops the commit with what to do."""
    session = await server.session()
    image = await server.photo(session)
    await server.store_metadata(
        image["id"],
        image_metadata={
            "bodySite": {"system": SNOMED, "code": FOREARM, "display": "Right forearm"},
            "laterality": "left",
            "view": "close-up",
        },
    )
    shown = (await server.clinician.get(sites_url(session, image))).json()["metadata"]
    assert shown["bodySite"]["display"] == "Forearm structure"
    archive = await server.clinician.get(f"/api/sessions/{session['id']}/download")
    assert zipfile.ZipFile(io.BytesIO(archive.content)).namelist() == ["01-left-forearm.jpg"]

    bundle = await server.commit(session)
    [media] = [entry["resource"] for entry in bundle["entry"]]
    assert media["bodySite"]["text"] == "Left forearm structure"
    assert media["bodySite"]["coding"][0]["display"] == "Forearm structure"
    assert media["view"] == {"text": "Close-up"}
    assert "Right" not in words_of(bundle)


async def test_a_stored_disorder_code_stops_the_commit_and_names_the_photo(server: Server) -> None:
    session = await server.session()
    image = await server.photo(session)
    await server.store_metadata(
        image["id"],
        image_metadata={"bodySite": {"system": SNOMED, "code": MYOCARDIAL_INFARCTION, "display": "Chest"}},
    )
    response = await server.clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})
    assert response.status_code in (422, 502), response.text
    assert MYOCARDIAL_INFARCTION in response.json()["detail"]
    assert "body site" in response.json()["detail"]
    assert not list((server.runtime.settings.data_dir / "outbox").glob("*.json"))


def _extension(tmp_path: Path, sites: list[dict[str, Any]], **extra: Any) -> Path:
    path = tmp_path / "practice-sites.json"
    source = {
        "system": SNOMED,
        "name": "SNOMED CT International Edition",
        "version": "http://snomed.info/sct/900000000000207008/version/20250201",
        "checked": "Looked up in the SNOMED CT browser by the practice's clinical lead.",
    }
    path.write_text(json.dumps({"source": source, "bodySites": sites, **extra}), encoding="utf-8")
    return path


AXILLA_SITE = {"code": AXILLA, "display": "Axillary region structure", "label": "Armpit"}


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """No override, or (indirect parametrisation with "extension") a practice's extension file."""
    if getattr(request, "param", None) == "extension":
        return {"body_sites_extension": _extension(tmp_path, [AXILLA_SITE])}
    return {}


async def test_without_an_extension_its_sites_are_refused(server: Server) -> None:
    session = await server.session()
    refused = await upload(
        server.phone, session["id"], jpeg_bytes("coffee.jpg"), metadata={"bodySite": {"code": AXILLA}}
    )
    assert_error(refused, 422, "InvalidRequest", AXILLA)


@pytest.mark.parametrize("settings_overrides", ["extension"], indirect=True)
async def test_a_practice_extension_adds_sites_with_its_own_words(server: Server) -> None:
    listed = (await server.clinician.get("/api/terminology/body-sites")).json()["bodySites"]
    assert listed[-1] == {"system": SNOMED, **AXILLA_SITE}
    assert len(listed) == 25

    session = await server.session()
    image = await server.photo(session, {"bodySite": {"code": AXILLA}, "laterality": "right"})
    assert image["metadata"]["bodySite"]["display"] == "Axillary region structure"
    bundle = await server.commit(session)
    [media] = [entry["resource"] for entry in bundle["entry"]]
    assert media["bodySite"]["text"] == "Right axillary region structure"


@pytest.mark.parametrize(
    ("sites", "extra", "words"),
    [
        ([{**AXILLA_SITE, "code": "91470001"}], {}, ("bodySites[0].code", "91470001")),
        ([{**AXILLA_SITE, "code": FOREARM}], {}, ("repeats", FOREARM)),
        ([{**AXILLA_SITE, "display": "Left axillary region structure"}], {}, ("laterality",)),
        ([AXILLA_SITE], {"laterality": []}, ("only add body sites",)),
        ([], {}, ("bodySites",)),
    ],
    ids=["check-digit", "repeats-packaged", "lateralised", "laterality", "empty"],
)
def test_a_bad_extension_stops_the_start_naming_the_setting(
    tmp_path: Path, sites: list[dict[str, Any]], extra: dict[str, Any], words: tuple[str, ...]
) -> None:
    path = _extension(tmp_path, sites, **extra)
    with pytest.raises(ValidationError) as caught:
        Settings(data_dir=tmp_path, body_sites_extension=path)
    message = str(caught.value)
    for word in ("CONSULTCAM_BODY_SITES_EXTENSION", str(path), *words):
        assert word in message, message


def test_a_missing_extension_file_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="CONSULTCAM_BODY_SITES_EXTENSION"):
        Settings(data_dir=tmp_path, body_sites_extension=tmp_path / "nowhere.json")


# -- identifiers: refused when the session is created ----------------------------------------------------


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"encounterId": "enc/1"}, ("encounterId", "FHIR id")),
        ({"encounterId": "enc 1"}, ("encounterId", "FHIR id")),
        ({"encounterId": "e" * 65}, ("encounterId", "64")),
        ({"encounterId": "urn:uuid:1"}, ("encounterId",)),
        ({"patient": {**PATIENT, "id": "pat|1"}}, ("patient.id", "FHIR id")),
        ({"patient": {**PATIENT, "id": "Patient/1"}}, ("patient.id",)),
        ({"practitionerId": "oidc:gp@example.org"}, ("practitionerId", "FHIR id")),
        ({"facilityId": "F2N060_E"}, ("facilityId", "FHIR id")),
        ({"patient": {**PATIENT, "nhi": "ZZZ0017"}}, ("patient.nhi", "check character")),
        ({"patient": {**PATIENT, "nhi": "ZZZ00AD"}}, ("patient.nhi", "check character")),
        ({"patient": {**PATIENT, "name": "   "}}, ("patient.name",)),
        ({"patient": {**PATIENT, "name": "Mere\u0007Tester"}}, ("patient.name", "control")),
        ({"patient": {**PATIENT, "name": "Mere\u202eTester"}}, ("patient.name", "control")),
        ({"patient": {**PATIENT, "name": "M" * 201}}, ("patient.name", "200")),
        (
            {"patient": {**PATIENT, "birthDate": str(NZ_TOMORROW)}},
            ("patient.birthDate", "future"),
        ),
        ({"patient": {**PATIENT, "birthDate": "1850-01-01"}}, ("patient.birthDate",)),
        ({"patient": {**PATIENT, "birthDate": "2025-02-30"}}, ("patient.birthDate",)),
    ],
    ids=[
        "encounter-slash",
        "encounter-space",
        "encounter-65",
        "encounter-urn",
        "patient-pipe",
        "patient-reference",
        "practitioner-colon",
        "facility-underscore",
        "nhi-old-format",
        "nhi-new-format",
        "name-blank",
        "name-bell",
        "name-bidi-override",
        "name-too-long",
        "born-tomorrow",
        "born-1850",
        "born-30-february",
    ],
)
async def test_identifiers_that_cannot_be_committed_are_refused_at_the_start(
    server: Server, change: dict[str, Any], words: tuple[str, ...]
) -> None:
    body = {
        "encounterId": "enc-1",
        "patient": PATIENT,
        "practitionerId": "gp-7",
        "facilityId": "F2N060-E",
        **change,
    }
    response = await server.clinician.post("/api/sessions", json=body)
    assert_error(response, 422, "InvalidRequest", *words)
    # Nothing was opened: the same encounter with valid details starts a new session (201, not 200).
    fresh = await server.clinician.post(
        "/api/sessions", json={"encounterId": "enc-1", "patient": PATIENT, "practitionerId": "gp-7"}
    )
    assert fresh.status_code == 201, fresh.text


async def test_valid_identifiers_of_both_nhi_formats_are_kept_trimmed(server: Server) -> None:
    # HISO 10046:2023 examples of both formats, as published with the open-source NHI validators.
    valid = (("zzz0016", "enc-1"), (" ZZZ00AC ", "A.b-9"), ("zsc21tn", "enc-3"), ("ZBN77VL", "enc-4"))
    for nhi, encounter in valid:
        patient = {"id": "pat-1", "name": "  Mere   Tester ", "nhi": nhi, "birthDate": "1931-05-04"}
        response = await server.clinician.post(
            "/api/sessions", json={"encounterId": encounter, "patient": patient, "facilityId": "F2N060-E"}
        )
        assert response.status_code == 201, response.text
        assert response.json()["patient"]["nhi"] == nhi.strip().upper()
        assert response.json()["patient"]["name"] == "Mere Tester"


# -- capture times: a wrong phone clock is not believed --------------------------------------------------


async def _register(server: Server, session: dict[str, Any], captured: str) -> httpx.Response:
    data = jpeg_bytes("coffee.jpg")
    slot = (
        await server.phone.post(
            f"/api/sessions/{session['id']}/uploads",
            json={"contentType": "image/jpeg", "sizeBytes": len(data)},
        )
    ).json()
    put = await server.phone.request(slot["method"], slot["uploadUrl"], content=data, headers=slot["headers"])
    assert put.status_code == 200, put.text
    return await server.phone.post(
        f"/api/sessions/{session['id']}/images", json={"imageId": slot["imageId"], "capturedAt": captured}
    )


async def test_capture_times_outside_the_session_are_ignored_with_a_warning(server: Server) -> None:
    session = await server.session()
    created = datetime.fromisoformat(session["createdAt"])
    now = datetime.now(UTC)
    cases = {
        "2001-09-09T01:46:40Z": None,  # a phone that lost its clock
        (created - timedelta(days=1, minutes=5)).isoformat(): None,
        (now + timedelta(hours=3)).isoformat(): None,  # the future, past any clock skew
        "9999-12-31T23:59:59+14:00": None,
        (created - timedelta(hours=23)).isoformat(): "kept",  # the phone's queue held it overnight
        (now + timedelta(minutes=2)).isoformat(): "kept",  # within the clock skew
    }
    for captured, expected in cases.items():
        response = await _register(server, session, captured)
        assert response.status_code == 201, response.text
        image = response.json()
        warnings = image["quality"]["warnings"]
        if expected is None:
            assert image["capturedAt"] is None, captured
            assert "capture-time-ignored" in warnings, captured
        else:
            assert datetime.fromisoformat(image["capturedAt"]) == datetime.fromisoformat(captured)
            assert "capture-time-ignored" not in warnings, captured

    bundle = await server.commit(session)
    for entry in bundle["entry"]:
        taken = datetime.fromisoformat(entry["resource"]["createdDateTime"])
        assert created - timedelta(days=1) <= taken <= datetime.now(UTC) + timedelta(minutes=5)


# -- edits: absurd numbers are a 422, never a 500 --------------------------------------------------------

EXTREME_EDITS = [
    {"rotation": 45},
    {"rotation": 1e308},
    {"rotation": -1e308},
    {"rotation": 10**30 + 1},
    {"rotation": "90"},
    {"rotation": True},
    {"crop": {"x": 0.5, "y": 0, "width": 0.6, "height": 1}},
    {"crop": {"x": -0.1, "y": 0, "width": 0.5, "height": 0.5}},
    {"crop": {"x": 0, "y": 0, "width": 1e308, "height": 1e308}},
    {"crop": {"x": 0, "y": 0, "width": 0, "height": 0}},
    {"crop": [0, 0, 1, 1]},
    {"annotations": [{"type": "arrow", "x1": 0, "y1": 0, "x2": 1e308, "y2": 1}]},
    {"annotations": [{"type": "arrow", "x1": -5, "y1": 0, "x2": 1, "y2": 1}]},
    {"annotations": [{"type": "circle", "x1": 0.1, "y1": 0.1, "x2": 0.2, "y2": 0.2, "color": "red"}]},
    {"annotations": [{"type": "text", "x1": 0.1, "y1": 0.1, "text": "x" * 100_000}]},
    {"annotations": [{"type": "arrow", "x1": 0.1, "y1": 0.1, "x2": 0.2, "y2": 0.2}] * 1000},
    {"annotations": {"type": "arrow"}},
    {"annotations": [{"type": "polygon", "x1": 0, "y1": 0, "x2": 1, "y2": 1}]},
    {"zoom": 3},
]

RAW_BODIES = [
    '{"edits": {"rotation": NaN}}',
    '{"edits": {"rotation": Infinity}}',
    '{"edits": {"crop": {"x": -Infinity}}}',
]


async def test_absurd_edits_are_422_with_what_is_wrong_never_500(server: Server) -> None:
    session = await server.session()
    image = await server.photo(session)
    url = sites_url(session, image)
    for edits in EXTREME_EDITS:
        response = await server.clinician.patch(url, json={"edits": edits})
        body = assert_error(response, 422)
        assert "edits" in body["detail"], (edits, body)
    for raw in RAW_BODIES:
        response = await server.clinician.patch(
            url, content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code in (400, 422), (raw, response.text)
        assert set(response.json()) == {"error", "detail"}
    assert (await server.clinician.get(url)).json()["edits"] == {}


@pytest.mark.parametrize(
    "stored",
    [
        {"rotation": 1e308},
        {"crop": {"x": 0, "y": 0, "width": 1e308, "height": 1}},
        {"annotations": [{"type": "arrow", "x1": 0, "y1": 0, "x2": 1e308, "y2": 1}]},
        {"annotations": [{"type": "text", "x1": 0.1, "y1": 0.1, "text": "x" * 100_000}]},
        {"crop": {"x": 0, "y": 0, "width": 0.0101, "height": 0.0101}},
        {"crop": "all"},
    ],
    ids=["rotation", "crop-huge", "arrow-huge", "text-huge", "crop-tiny", "crop-word"],
)
async def test_stored_absurd_edits_are_422_on_download_and_commit_never_500(
    server: Server, stored: dict[str, Any]
) -> None:
    """Edits that passed an older check, or were written straight into the database: the download, the ZIP
    and the commit say what is wrong with the photo's edits and keep it, rather than failing as a 500."""
    session = await server.session()
    image = await upload(server.phone, session["id"], _tiny_jpeg())
    assert image.status_code == 201, image.text
    image_id = image.json()["id"]
    await server.store_metadata(image_id, edits=stored)
    for path in (f"/images/{image_id}/download", "/download"):
        response = await server.clinician.get(f"/api/sessions/{session['id']}{path}")
        assert_error(response, 422, "InvalidEdits", "edits")
    response = await server.clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "InvalidEdits"
    assert "edits" in response.json()["detail"]
    after = (await server.clinician.get(f"/api/sessions/{session['id']}")).json()
    assert after["status"] == "open"  # nothing claimed: fix the edits and commit again
    assert not list((server.runtime.settings.data_dir / "outbox").glob("*.json"))


def _tiny_jpeg() -> bytes:
    """A 64 × 48 photo: a crop of 1 % of it is under one pixel."""
    out = io.BytesIO()
    with Image.open(io.BytesIO(jpeg_bytes("coffee.jpg"))) as source:
        source.convert("RGB").resize((64, 48)).save(out, "JPEG", quality=90)
    return out.getvalue()
