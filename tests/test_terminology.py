"""Coded data (issue 5): the curated SNOMED CT body sites, laterality and views, the data file's checks, who
may read `GET /api/terminology/body-sites`, and the three views an image's metadata accepts."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest

from consultcam.commits import fhir_media
from consultcam.images.schemas import ImageMetadata
from consultcam.terminology import (
    LATERALITY_CODES,
    LATERALITY_WORDS,
    SNOMED_CT,
    TERMINOLOGY,
    TerminologyDataError,
    is_snomed_concept_id,
)
from consultcam.terminology.loading import default_data_path, load_terminology
from consultcam.terminology.model import BODY_SITE_COUNT, LATERALITY_VALUES, VIEW_VALUES
from consultcam.terminology.snomed import verhoeff_valid
from consultcam.terminology.words import MetadataWords, metadata_words, with_side
from tests.conftest import assert_error, jpeg_bytes, pair_phone, start_session, upload

URL = "/api/terminology/body-sites"
REPO = Path(__file__).resolve().parent.parent


def packaged() -> dict[str, Any]:
    """The packaged data file as JSON (a fresh copy each time, to corrupt in a test)."""
    return json.loads(default_data_path().read_text(encoding="utf-8"))


# --- the packaged list ----------------------------------------------------------------------------------


def test_the_list_holds_24_unique_sites_with_valid_ids() -> None:
    sites = TERMINOLOGY.body_sites
    assert len(sites) == BODY_SITE_COUNT == 24
    assert len({site.code for site in sites}) == 24
    assert len({site.display.casefold() for site in sites}) == 24
    for site in sites:
        assert is_snomed_concept_id(site.code), site
        assert verhoeff_valid(site.code), site
        assert site.code[-3:-1] == "00", f"{site}: an International Edition concept (short-form partition)"
        assert site.display == site.display.strip(), site
        assert "(" not in site.display, f"{site}: the preferred term, not the FSN with its semantic tag"
    # Most used first: the face leads, and the common GP sites are all there.
    assert sites[0].display == "Face structure"
    assert {"14975008", "30021000", "77568009", "85562004", "41695006"} <= {site.code for site in sites}


def test_every_site_names_the_references_it_was_checked_in() -> None:
    data = packaged()
    assert data["source"]["system"] == SNOMED_CT
    assert data["source"]["version"].startswith("http://snomed.info/sct/900000000000207008/version/")
    references = data["references"]
    for entry in data["bodySites"] + [side for side in data["laterality"] if "code" in side]:
        assert entry["checkedIn"], entry
        assert set(entry["checkedIn"]) <= set(references), entry


def test_laterality_and_views_are_one_source_of_truth() -> None:
    assert LATERALITY_CODES == {
        "left": ("7771000", "Left"),
        "right": ("24028007", "Right"),
        "bilateral": ("51440002", "Right and left"),
    }
    assert LATERALITY_WORDS == {"left": "Left", "right": "Right", "bilateral": "Bilateral"}
    assert tuple(side.value for side in TERMINOLOGY.laterality) == LATERALITY_VALUES
    assert tuple(view.value for view in TERMINOLOGY.views) == VIEW_VALUES
    # The API accepts exactly these values, and the FHIR Media writer knows the same ones and words.
    fields = ImageMetadata.model_fields
    assert set(get_args(get_args(fields["view"].annotation)[0])) == set(VIEW_VALUES)
    assert set(get_args(get_args(fields["laterality"].annotation)[0])) == set(LATERALITY_VALUES)
    assert fhir_media.LATERALITY_VALUES == LATERALITY_VALUES
    # Issue 10: the Medtech mapping keeps no laterality words of its own; every connector reads this file.
    medtech = json.loads((REPO / "consultcam/data/medtech.json").read_text(encoding="utf-8"))
    assert "laterality" not in medtech
    assert [side.without_site for side in TERMINOLOGY.laterality] == [
        "Left side",
        "Right side",
        "Both sides",
        None,
    ]


def test_loading_the_packaged_file_again_gives_the_same_data() -> None:
    assert load_terminology() == TERMINOLOGY


# --- a broken data file is refused ----------------------------------------------------------------------


def _set(path: str, value: Any) -> Any:
    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = data
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        target[int(last) if last.isdigit() else last] = value

    return change


def _wrong_check_digit(data: dict[str, Any]) -> None:
    data["bodySites"][3]["code"] = "14975009"  # Forearm structure with its last digit changed


def _duplicate_code(data: dict[str, Any]) -> None:
    data["bodySites"][5] = {**data["bodySites"][5], "code": data["bodySites"][0]["code"]}


def _duplicate_term(data: dict[str, Any]) -> None:
    data["bodySites"][5] = {**data["bodySites"][5], "display": "face STRUCTURE"}


def _one_short(data: dict[str, Any]) -> None:
    data["bodySites"].pop()


def _one_over(data: dict[str, Any]) -> None:
    data["bodySites"].append({"code": "8205005", "display": "Wrist region structure"})


def _no_not_applicable(data: dict[str, Any]) -> None:
    data["laterality"].pop()


def _coded_not_applicable(data: dict[str, Any]) -> None:
    data["laterality"][3]["code"] = "385432009"


def _other_view(data: dict[str, Any]) -> None:
    data["views"][1] = {"value": "lateral", "display": "Lateral"}


@pytest.mark.parametrize(
    ("corrupt", "words"),
    [
        (_wrong_check_digit, ("bodySites[3].code", "'14975009'", "Verhoeff")),
        (_set("bodySites.7.code", "117590005 "), ("bodySites[7].code", "not a SNOMED CT concept id")),
        (_set("bodySites.2.code", 30021000), ("bodySites[2].code", "not a SNOMED CT concept id")),
        (_set("bodySites.2.code", "3002100"), ("bodySites[2].code", "not a SNOMED CT concept id")),
        (_duplicate_code, ("bodySites[5].code", "'89545001'", "repeats bodySites[0]")),
        (_duplicate_term, ("bodySites[5].display", "repeats bodySites[0]")),
        (_set("bodySites.4.display", "  "), ("bodySites[4]", "non-empty text")),
        (_one_short, ("exactly 24", "not 23")),
        (_one_over, ("exactly 24", "not 25")),
        (_set("bodySites", {"code": "89545001"}), ("bodySites", "JSON list")),
        (_no_not_applicable, ("laterality values", "not-applicable")),
        (_coded_not_applicable, ("laterality[3]", "no SNOMED CT code")),
        (_set("laterality.2.code", "51440003"), ("laterality[2].code", "not a SNOMED CT concept id")),
        (_other_view, ("views values", "'lateral'")),
        (_set("source.system", "http://loinc.org"), ("source.system", "http://snomed.info/sct")),
        (_set("source.version", ""), ("source.version", "non-empty text")),
        (_set("laterality.2.withoutSite", None), ("laterality[2].withoutSite", "non-empty text")),
        (_set("bodySites.3.display", "Left forearm structure"), ("bodySites[3].display", "names a side")),
    ],
    ids=[
        "check-digit",
        "trailing-space",
        "number-not-text",
        "too-short-id",
        "duplicate-code",
        "duplicate-term",
        "blank-term",
        "23-sites",
        "25-sites",
        "sites-not-a-list",
        "laterality-missing",
        "coded-not-applicable",
        "laterality-check-digit",
        "other-view",
        "other-system",
        "no-edition",
        "no-words-for-a-side-alone",
        "lateralised-site",
    ],
)
def test_a_corrupted_file_is_refused_with_a_clear_error(
    tmp_path: Path, corrupt: Any, words: tuple[str, ...]
) -> None:
    data = copy.deepcopy(packaged())
    corrupt(data)
    path = tmp_path / "body-sites.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(TerminologyDataError) as caught:
        load_terminology(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    for word in words:
        assert word in message, message


def test_a_missing_or_unreadable_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TerminologyDataError, match="body-site data file is missing"):
        load_terminology(tmp_path / "nope.json")
    broken = tmp_path / "body-sites.json"
    broken.write_text('{"bodySites": [', encoding="utf-8")
    with pytest.raises(TerminologyDataError, match="cannot read the body-site data file as JSON"):
        load_terminology(broken)
    broken.write_text("[]", encoding="utf-8")
    with pytest.raises(TerminologyDataError, match="one JSON object"):
        load_terminology(broken)


def test_a_broken_packaged_file_stops_the_import(tmp_path: Path) -> None:
    """The app refuses to start on a bad list rather than coding photos wrongly: importing consultcam's
    terminology (as the app and the connectors do) with a corrupted packaged file fails, naming it."""
    data = packaged()
    data["bodySites"][0]["code"] = "89545002"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "body-sites.json").write_text(json.dumps(data), encoding="utf-8")
    script = textwrap.dedent(
        f"""
        import importlib.resources, pathlib
        importlib.resources.files = lambda package: pathlib.Path({str(tmp_path)!r})
        import consultcam.terminology
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert "TerminologyDataError" in result.stderr
    assert "body-sites.json: bodySites[0].code '89545002' is not a SNOMED CT concept id" in result.stderr


# --- GET /api/terminology/body-sites ----------------------------------------------------------------------


def assert_shape(body: dict[str, Any]) -> None:
    assert set(body) == {"source", "bodySites", "laterality", "views"}
    assert body["source"]["system"] == SNOMED_CT
    assert body["source"]["name"] == "SNOMED CT International Edition"
    assert "Verhoeff" in body["source"]["checked"]
    assert body["source"]["version"] == TERMINOLOGY.source["version"]
    sites = body["bodySites"]
    assert len(sites) == 24
    assert all(set(site) == {"system", "code", "display", "label"} for site in sites)
    assert all(site["system"] == SNOMED_CT and is_snomed_concept_id(site["code"]) for site in sites)
    assert len({site["code"] for site in sites}) == 24
    # In the file's order: most used first.
    assert [site["code"] for site in sites] == [site.code for site in TERMINOLOGY.body_sites]
    assert sites[3] == {
        "system": SNOMED_CT,
        "code": "14975008",
        "display": "Forearm structure",
        "label": "Forearm",
    }
    assert body["laterality"] == [
        {"value": "left", "display": "Left", "system": SNOMED_CT, "code": "7771000"},
        {"value": "right", "display": "Right", "system": SNOMED_CT, "code": "24028007"},
        {"value": "bilateral", "display": "Bilateral", "system": SNOMED_CT, "code": "51440002"},
        {"value": "not-applicable", "display": "Not applicable"},
    ]
    assert body["views"] == [
        {"value": "overview", "display": "Overview"},
        {"value": "close-up", "display": "Close-up"},
        {"value": "dermoscopy", "display": "Dermoscopy"},
    ]


async def test_clinician_and_paired_phone_read_the_list(
    clinician: httpx.AsyncClient, new_client: Any
) -> None:
    response = await clinician.get(URL)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert_shape(response.json())
    phone = await pair_phone(new_client, await start_session(clinician))
    from_phone = await phone.get(URL)
    assert from_phone.status_code == 200, from_phone.text
    assert from_phone.json() == response.json()


async def test_nobody_and_a_revoked_phone_get_401(
    anonymous: httpx.AsyncClient, clinician: httpx.AsyncClient, new_client: Any
) -> None:
    response = await anonymous.get(URL)
    assert_error(response, 401, "NotAuthenticated", "sign in")
    assert "www-authenticate" in response.headers
    assert_error(await new_client(authorization="Bearer not-a-real-token").get(URL), 401, "PhoneNotPaired")

    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    assert (await phone.get(URL)).status_code == 200
    assert (await clinician.delete(f"/api/sessions/{session['id']}/phone")).status_code == 204
    assert_error(await phone.get(URL), 401, "PhoneNotPaired", "QR code")


# --- image metadata takes one of the three views ----------------------------------------------------------


async def test_image_view_is_one_of_the_three(clinician: httpx.AsyncClient, new_client: Any) -> None:
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    registered = await upload(phone, session["id"], jpeg_bytes("cat.jpg"), metadata={"view": "overview"})
    assert registered.status_code == 201, registered.text
    assert registered.json()["metadata"] == {"view": "overview"}
    url = f"/api/sessions/{session['id']}/images/{registered.json()['id']}"

    for view in VIEW_VALUES:
        response = await clinician.patch(url, json={"metadata": {"view": view}})
        assert response.status_code == 200, response.text
        assert response.json()["metadata"]["view"] == view

    for wrong in ("lateral", "Close-up", "close up", ""):
        body = assert_error(
            await clinician.patch(url, json={"metadata": {"view": wrong}}),
            422,
            "InvalidRequest",
            "metadata.view",
        )
        assert "'overview', 'close-up' or 'dermoscopy'" in body["detail"], body
    assert (await clinician.get(url)).json()["metadata"] == {"view": "dermoscopy"}  # the last good one stays

    cleared = await clinician.patch(url, json={"metadata": {"view": None}})
    assert cleared.status_code == 200, cleared.text
    assert "view" not in cleared.json()["metadata"]


# --- one vocabulary: the server says the words the pages show ----------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "words"),
    [
        (
            {"bodySite": {"system": SNOMED_CT, "code": "14975008"}, "laterality": "left", "view": "close-up"},
            MetadataWords("Forearm", "Left", "Close-up", "Left forearm"),
        ),
        # The short name is the data file's label, not the preferred term cut down ("Eye region structure").
        (
            {"bodySite": {"system": SNOMED_CT, "code": "371398005"}, "laterality": "bilateral"},
            MetadataWords("Eye region", "Bilateral", None, "Bilateral eye region"),
        ),
        ({"bodySite": {"system": SNOMED_CT, "code": "77568009"}}, MetadataWords("Back", None, None, "Back")),
        # "not-applicable" is shown as a choice, but says nothing about the place.
        (
            {"bodySite": {"system": SNOMED_CT, "code": "85562004"}, "laterality": "not-applicable"},
            MetadataWords("Hand", "Not applicable", None, "Hand"),
        ),
        ({"laterality": "right"}, MetadataWords(None, "Right", None, "Right")),
        # A code or value no longer listed has no words (the commit asks for it again), never a client's.
        (
            {"bodySite": {"system": SNOMED_CT, "code": "22298006", "display": "Heart"}, "view": "x-ray"},
            MetadataWords(),
        ),
        ({}, MetadataWords()),
    ],
)
def test_metadata_words_are_the_data_files(metadata: dict[str, Any], words: MetadataWords) -> None:
    assert metadata_words(metadata) == words


def test_a_side_goes_before_a_site_keeping_abbreviations() -> None:
    assert with_side("Left", "Forearm") == "Left forearm"
    assert with_side("Right", "MCP joint") == "Right MCP joint"


async def test_every_image_carries_the_words_of_its_metadata(
    clinician: httpx.AsyncClient, new_client: Any
) -> None:
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    forearm = {"system": SNOMED_CT, "code": "14975008"}
    registered = await upload(
        phone, session["id"], jpeg_bytes("cat.jpg"), metadata={"bodySite": forearm, "laterality": "left"}
    )
    assert registered.status_code == 201, registered.text
    assert registered.json()["words"] == {
        "bodySite": "Forearm",
        "laterality": "Left",
        "view": None,
        "place": "Left forearm",
    }
    url = f"/api/sessions/{session['id']}/images/{registered.json()['id']}"
    patched = await clinician.patch(url, json={"metadata": {"view": "dermoscopy", "laterality": None}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["words"] == {
        "bodySite": "Forearm",
        "laterality": None,
        "view": "Dermoscopy",
        "place": "Forearm",
    }
    listed = (await clinician.get(f"/api/sessions/{session['id']}/images")).json()["images"]
    assert listed[0]["words"] == patched.json()["words"]
