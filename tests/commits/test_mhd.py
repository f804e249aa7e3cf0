"""The IHE MHD ITI-65 Provide Document Bundle checked offline against MHD 4.2.x rules, Minimal Metadata.

Each test names the rule it checks: the ITI-65 message semantics (§2:3.65.4.1.2) and the StructureDefinitions
IHE.MHD.Minimal.ProvideBundle, IHE.MHD.Minimal.SubmissionSet, IHE.MHD.Minimal.DocumentReference,
IHE.MHD.UniqueIdIdentifier and IHE.MHD.EntryUUID.Identifier (profiles.ihe.net/ITI/MHD). The commit through the
connector into a FHIR server is `test_mhd_commit.py`.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
import uuid
from datetime import timedelta, timezone
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from consultcam.commits.connectors.base import CommitContext, CommitItem
from consultcam.commits.fhir_mhd import binary_contents, build_provide_bundle, referencing_binaries, uuid_oid
from tests.commits.factories import PHOTOS, commit_context, photo_item

NZDT = timezone(timedelta(hours=13))
SNOMED = "http://snomed.info/sct"
MHD = "https://profiles.ihe.net/ITI/MHD"
RFC3986 = "urn:ietf:rfc:3986"
FOREARM = {"system": SNOMED, "code": "14975008", "display": "a client's own words for it"}
OID = re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+")


def make_context(**changes: Any) -> CommitContext:
    return commit_context(**{"facility_id": "fac-1", **changes})


def make_item(photo: str, metadata: dict[str, Any]) -> CommitItem:
    """A photo of tests/photos with exactly `metadata` (no label added)."""
    return dataclasses.replace(photo_item((PHOTOS / photo).read_bytes()), metadata=metadata)


ITEMS = [
    make_item("cat.jpg", {"label": "Lesion A", "bodySite": FOREARM, "laterality": "left"}),
    make_item("coffee.jpg", {"label": "Lesion B"}),
]


@pytest.fixture(scope="module")
def bundle() -> dict[str, Any]:
    return build_provide_bundle(make_context(), ITEMS)


def of_type(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [entry for entry in bundle["entry"] if entry["resource"]["resourceType"] == kind]


def resolve(bundle: dict[str, Any], reference: str) -> dict[str, Any]:
    """The entry whose fullUrl `reference` is (FHIR R4 bundle.html#references); fails when none is."""
    found = [entry for entry in bundle["entry"] if entry["fullUrl"] == reference]
    assert len(found) == 1, f"{reference} does not resolve inside the Bundle"
    return found[0]


def submission_set(bundle: dict[str, Any]) -> dict[str, Any]:
    (entry,) = of_type(bundle, "List")
    return entry["resource"]


def sliced(identifiers: list[dict[str, Any]], use: str) -> list[dict[str, Any]]:
    """MHD 4.2.x slices identifier by `use`: uniqueId is `usual`, entryUUID `official`."""
    return [identifier for identifier in identifiers if identifier.get("use") == use]


# -- IHE.MHD.Minimal.ProvideBundle ----------------------------------------------------------------------


def test_bundle_type_is_transaction(bundle):
    assert bundle["type"] == "transaction"


def test_bundle_meta_profile_is_the_minimal_provide_bundle(bundle):
    """ITI-65 §2:3.65.4.1.2.1: Bundle.meta.profile names the option; meta.profile 1..*."""
    assert bundle["meta"]["profile"] == [f"{MHD}/StructureDefinition/IHE.MHD.Minimal.ProvideBundle"]


def test_entry_slicing_is_closed_one_submission_set_and_documents_with_their_binaries(bundle):
    """entry slicing rules #closed: SubmissionSet 1..1, DocumentRefs 0..*, Documents (Binary) 0..*."""
    kinds = [entry["resource"]["resourceType"] for entry in bundle["entry"]]
    assert sorted(set(kinds)) == ["Binary", "DocumentReference", "List"]
    assert kinds.count("List") == 1
    assert kinds.count("DocumentReference") == kinds.count("Binary") == len(ITEMS)


def test_every_entry_is_a_post_create_of_its_resource_type(bundle):
    """entry[SubmissionSet|DocumentRefs].request.method = #POST; ITI-65: a 'create' of each resource."""
    for entry in bundle["entry"]:
        assert entry["request"]["method"] == "POST"
        assert entry["request"]["url"] == entry["resource"]["resourceType"]


def test_full_urls_are_distinct_urn_uuids(bundle):
    """Resources new to the server are named by urn:uuid fullUrls that references resolve to."""
    full_urls = [entry["fullUrl"] for entry in bundle["entry"]]
    assert len(set(full_urls)) == len(full_urls)
    for full_url in full_urls:
        assert full_url.startswith("urn:uuid:")
        uuid.UUID(full_url.removeprefix("urn:uuid:"))


def test_no_identifier_is_an_entrys_full_url(bundle):
    """Some servers replace a fullUrl wherever its text appears in the Bundle: an identifier (an entryUUID,
    an ifNoneExist criterion) that equals one would be rewritten into the server's id."""
    full_urls = {entry["fullUrl"] for entry in bundle["entry"]}
    for entry in bundle["entry"]:
        values = [i["value"] for i in entry["resource"].get("identifier", [])]
        values.append(entry["request"].get("ifNoneExist", ""))
        assert not [v for v in values if any(full_url in v for full_url in full_urls)]


def test_every_resource_and_the_bundle_are_valid_fhir_r4(bundle):
    for entry in bundle["entry"]:
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    get_fhir_model_class("Bundle").model_validate(bundle)


# -- IHE.MHD.Minimal.SubmissionSet ----------------------------------------------------------------------


def test_submission_set_fixed_values(bundle):
    """status = #current, mode = #working, code = MHDlistTypes#submissionset."""
    listing = submission_set(bundle)
    assert listing["status"] == "current"
    assert listing["mode"] == "working"
    assert listing["code"]["coding"] == [
        {"system": f"{MHD}/CodeSystem/MHDlistTypes", "code": "submissionset"}
    ]


def test_submission_set_unique_id_is_an_oid(bundle):
    """identifier[uniqueId] 0..1, SubmissionSetUniqueIdIdentifier: system urn:ietf:rfc:3986 exactly, use
    usual, value obeys mhd-startswithoid."""
    (unique_id,) = sliced(submission_set(bundle)["identifier"], "usual")
    assert unique_id["system"] == RFC3986
    assert OID.fullmatch(unique_id["value"])


def test_submission_set_entry_uuid(bundle):
    """identifier[entryUUID]: system urn:ietf:rfc:3986 exactly, use official, mhd-startswithuuid."""
    (entry_uuid,) = sliced(submission_set(bundle)["identifier"], "official")
    assert entry_uuid["system"] == RFC3986
    assert entry_uuid["value"].startswith("urn:uuid:")
    uuid.UUID(entry_uuid["value"].removeprefix("urn:uuid:"))


def test_submission_set_source_id_extension_is_one_oid(bundle):
    """extension[sourceId] 1..1 (ihe-sourceId), valueIdentifier 1..1; its format is an OID."""
    sources = [
        e
        for e in submission_set(bundle)["extension"]
        if e["url"] == f"{MHD}/StructureDefinition/ihe-sourceId"
    ]
    assert len(sources) == 1
    assert OID.fullmatch(sources[0]["valueIdentifier"]["value"])


def test_submission_set_designation_type_at_most_once(bundle):
    """extension[designationType] 0..1 for Minimal (1..1 only for Comprehensive)."""
    url = f"{MHD}/StructureDefinition/ihe-designationType"
    assert len([e for e in submission_set(bundle).get("extension", []) if e["url"] == url]) <= 1


def test_submission_set_subject_date_and_source(bundle):
    """subject only Reference(Patient) and, ITI-65 §2:3.65.4.1.2.1, populated with the Patient; date 1..1;
    source (the author) the practitioner."""
    listing = submission_set(bundle)
    assert listing["subject"]["reference"] == "Patient/pat-77"
    assert listing["date"] == "2025-01-15T02:30:05+00:00"
    assert listing["source"] == {"reference": "Practitioner/prac-9"}


def test_submission_set_prohibited_elements_are_absent(bundle):
    """encounter, orderedBy, emptyReason, entry.flag/deleted/date and modifierExtension are all 0..0."""
    listing = submission_set(bundle)
    for element in ("encounter", "orderedBy", "emptyReason", "modifierExtension"):
        assert element not in listing
    for entry in listing["entry"]:
        assert set(entry) == {"item"}


def test_submission_set_entries_are_exactly_the_document_references(bundle):
    """entry.item only Reference(DocumentReference or List); each resolves inside the Bundle."""
    items = [entry["item"]["reference"] for entry in submission_set(bundle)["entry"]]
    assert [resolve(bundle, item)["resource"]["resourceType"] for item in items] == ["DocumentReference"] * 2
    assert items == [entry["fullUrl"] for entry in of_type(bundle, "DocumentReference")]


# -- IHE.MHD.Minimal.DocumentReference ------------------------------------------------------------------


def documents(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry["resource"] for entry in of_type(bundle, "DocumentReference")]


def test_master_identifier_is_a_unique_id_oid(bundle):
    """masterIdentifier 1..1 only UniqueIdIdentifier (system 1.., use usual, value 1..): the document's XDS
    uniqueId, an OID of at most 64 characters (ITI TF-3 §4.2.3.2.26), distinct per photo."""
    values = []
    for document in documents(bundle):
        master = document["masterIdentifier"]
        assert (master["system"], master["use"]) == (RFC3986, "usual")
        assert OID.fullmatch(master["value"])
        assert len(master["value"].removeprefix("urn:oid:")) <= 64
        values.append(master["value"])
    assert len(set(values)) == len(values)


def test_document_entry_uuid(bundle):
    """identifier[entryUUID]: system urn:ietf:rfc:3986 exactly, use official, mhd-startswithuuid."""
    for document in documents(bundle):
        (entry_uuid,) = sliced(document["identifier"], "official")
        assert entry_uuid["system"] == RFC3986
        assert entry_uuid["value"].startswith("urn:uuid:")


def test_document_status_type_and_prohibited_elements(bundle):
    """status 1..1 from DocumentReferenceStats (current); docStatus 0..0; modifierExtension 0..0; type
    LOINC 72170-4 "Photographic image"."""
    for document in documents(bundle):
        assert document["status"] == "current"
        assert "docStatus" not in document
        assert "modifierExtension" not in document
        assert document["type"]["coding"] == [
            {"system": "http://loinc.org", "code": "72170-4", "display": "Photographic image"}
        ]


def test_document_subject_is_the_same_patient_as_the_submission_set(bundle):
    """subject only Reference(Patient); ITI-65: DocumentReference.subject and List.subject the Patient."""
    subjects = {document["subject"]["reference"] for document in documents(bundle)}
    assert subjects == {submission_set(bundle)["subject"]["reference"]} == {"Patient/pat-77"}


def test_document_date_and_author(bundle):
    for document in documents(bundle):
        assert document["date"] == "2025-01-15T02:30:05+00:00"
        assert document["author"] == [{"reference": "Practitioner/prac-9"}]


def test_content_is_one_attachment_by_url_without_data(bundle):
    """content 1..1; attachment.contentType 1..1; attachment.data 0..0; attachment.url 1..1; creation."""
    for document in documents(bundle):
        (content,) = document["content"]
        attachment = content["attachment"]
        assert attachment["contentType"] == "image/jpeg"
        assert "data" not in attachment
        assert attachment["url"].startswith("urn:uuid:")
        assert attachment["creation"] == "2025-01-15T15:12:40+13:00"
        assert content["format"]["code"] == "urn:ihe:iti:xds:2017:mimeTypeSufficient"


def test_attachment_url_resolves_to_a_binary_in_the_bundle(bundle):
    """ITI-65 §2:3.65.4.1.2.1: when attachment.url points at a Binary, the Binary shall be in the Bundle; and
    every Binary is some document's content (no orphan)."""
    urls = [document["content"][0]["attachment"]["url"] for document in documents(bundle)]
    assert [resolve(bundle, url)["resource"]["resourceType"] for url in urls] == ["Binary"] * len(ITEMS)
    assert sorted(urls) == sorted(entry["fullUrl"] for entry in of_type(bundle, "Binary"))


def test_hash_and_size_measure_the_raw_bytes_in_the_binary(bundle):
    """ITI-65: .hash and .size measure the raw artifact base64-encoded in Binary.data; FHIR R4 Attachment.hash
    is the base64 of its SHA-1. And the bytes are the photo's, unchanged."""
    for item, document in zip(ITEMS, documents(bundle), strict=True):
        attachment = document["content"][0]["attachment"]
        binary = resolve(bundle, attachment["url"])["resource"]
        raw = base64.b64decode(binary["data"], validate=True)
        assert raw == item.jpeg
        assert binary["contentType"] == attachment["contentType"] == "image/jpeg"
        assert attachment["size"] == len(raw)
        assert attachment["hash"] == base64.b64encode(hashlib.sha1(raw).digest()).decode()


def test_context_encounter_period_and_body_site_in_the_records_words(bundle):
    """context.period 0..1 (the capture time); context.encounter; the body site as context.event (SNOMED CT,
    the data file's preferred term, never the client's words); Minimal needs no sourcePatientInfo, nothing
    contained."""
    with_site, without = documents(bundle)
    for document in (with_site, without):
        assert document["context"]["encounter"] == [{"reference": "Encounter/enc-1"}]
        assert document["context"]["period"] == {"start": "2025-01-15T15:12:40+13:00"}
        assert "sourcePatientInfo" not in document["context"]
        assert "contained" not in document
    (event,) = with_site["context"]["event"]
    assert event["coding"][0] == {"system": SNOMED, "code": "14975008", "display": "Forearm structure"}
    assert event["coding"][1]["code"] == "14975008:272741003=7771000"
    assert event["text"] == "Left forearm structure"
    assert "a client's own words" not in str(with_site)
    assert "event" not in without["context"]


# -- the Binaries uploaded first: the Bundle without Binary entries (a server's request limit) -------------


@pytest.fixture(scope="module")
def uploaded(bundle: dict[str, Any]) -> dict[str, str]:
    """What the connector uploaded: each Binary entry's fullUrl → the Binary on the server."""
    return {full_url: f"Binary/b{index}" for index, (full_url, _, _) in enumerate(binary_contents(bundle))}


@pytest.fixture(scope="module")
def referencing(bundle: dict[str, Any], uploaded: dict[str, str]) -> dict[str, Any]:
    return referencing_binaries(bundle, uploaded)


def test_binary_contents_are_each_documents_raw_bytes_in_item_order(bundle):
    """The bytes uploaded for each DocumentReference are those its attachment.url resolved to in the Bundle:
    the photo's, unchanged (so size and hash still measure them)."""
    contents = binary_contents(bundle)
    assert [content for _, content, _ in contents] == [item.jpeg for item in ITEMS]
    assert [url for url, _, _ in contents] == [
        d["content"][0]["attachment"]["url"] for d in documents(bundle)
    ]
    assert {content_type for _, _, content_type in contents} == {"image/jpeg"}


def test_referencing_bundle_has_no_binary_entries_and_is_still_a_minimal_provide_bundle(referencing):
    """ITI-65 §2:3.65.4.1.2: "zero or more Binary Resources"; IHE.MHD.Minimal.ProvideBundle: Documents 0..*,
    SubmissionSet 1..1, so the profile stays Minimal (UnContained is about contained author/patient,
    §1:33.2.3, and "UnContained Minimal is the same as Minimal Metadata", §2:3.65.4.1.2.1)."""
    kinds = [entry["resource"]["resourceType"] for entry in referencing["entry"]]
    assert kinds == ["List"] + ["DocumentReference"] * len(ITEMS)
    assert referencing["type"] == "transaction"
    assert referencing["meta"]["profile"] == [f"{MHD}/StructureDefinition/IHE.MHD.Minimal.ProvideBundle"]
    get_fhir_model_class("Bundle").model_validate(referencing)


def test_referencing_bundle_points_each_document_at_its_uploaded_binary(bundle, referencing, uploaded):
    """attachment.url is the server's Binary/<id> of the same bytes; contentType, size, hash, title and
    creation unchanged; still no data (MHD: attachment.data 0..0)."""
    before = [d["content"][0]["attachment"] for d in documents(bundle)]
    after = [d["content"][0]["attachment"] for d in documents(referencing)]
    for old, new in zip(before, after, strict=True):
        assert new["url"] == uploaded[old["url"]]
        assert {k: v for k, v in new.items() if k != "url"} == {k: v for k, v in old.items() if k != "url"}
        assert "data" not in new


def test_referencing_bundle_keeps_the_submission_set_and_sends_plain_creates(bundle, referencing):
    """Everything but the Binaries and the urls is the Bundle as built: the same SubmissionSet (a later
    attempt finds it by its entryUUID), each entry a POST create of its type (ITI-65 §2:3.65.4.1.2: a
    transaction using "create"), but none conditional (Medplum takes at most 8 entries in a transaction
    with a conditional create; the sender looks the SubmissionSet up instead)."""
    assert submission_set(referencing) == submission_set(bundle)
    assert documents(referencing)[0]["masterIdentifier"] == documents(bundle)[0]["masterIdentifier"]
    for entry in referencing["entry"]:
        assert entry["request"] == {"method": "POST", "url": entry["resource"]["resourceType"]}
    assert referencing["identifier"] == bundle["identifier"]
    assert "Binary" in [e["request"]["url"] for e in bundle["entry"]]  # the Bundle given is not changed
    assert all("ifNoneExist" in e["request"] for e in bundle["entry"] if e["request"]["url"] != "Binary")


def test_a_binary_not_uploaded_is_refused(bundle, uploaded):
    """A Binary entry not uploaded is an error, never a dangling urn:uuid reference out of the Bundle."""
    first = next(iter(uploaded))
    with pytest.raises(ValueError, match="not uploaded"):
        referencing_binaries(bundle, {k: v for k, v in uploaded.items() if k != first})


# -- the ids: the same commit builds the same Bundle ----------------------------------------------------


def test_a_retry_of_the_commit_builds_the_same_bundle():
    """A second attempt (same commit id and time) must name the same SubmissionSet, documents and Binaries,
    so the registry recognises them (ifNoneExist, duplicate uniqueId) rather than storing them twice."""
    context = make_context()
    assert build_provide_bundle(context, ITEMS) == build_provide_bundle(context, ITEMS)
    other = build_provide_bundle(make_context(), ITEMS)
    assert (
        submission_set(other)["identifier"]
        != submission_set(build_provide_bundle(context, ITEMS))["identifier"]
    )


def test_uuid_oid_is_the_x667_integer_form():
    value = uuid.UUID("f81d4fae-7dec-11d0-a765-00a0c91e6bf6")  # ITU-T X.667's own example
    assert uuid_oid(value) == "urn:oid:2.25.329800735698586629295641978511506172918"


def test_a_photo_that_is_not_a_jpeg_is_named_and_nothing_is_built():
    broken = make_item("cat.jpg", {"label": "Rash"})
    broken = CommitItem(**{**broken.__dict__, "jpeg": b"GIF89a not a photo"})
    with pytest.raises(ValueError, match=r"photo 'Rash'.*not a JPEG"):
        build_provide_bundle(make_context(), [ITEMS[0], broken])
    with pytest.raises(ValueError, match="no photos"):
        build_provide_bundle(make_context(), [])
