"""How ALEX's answers are read (`consultcam.launch.alex_api`): the launch context's fields and times, and the
Patient's name, NHI and birth date. Shapes a real ALEX may send that the test double does not."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from consultcam.config import Settings
from consultcam.launch.alex_api import alex_root, parse_context, parse_patient
from consultcam.launch.port import LaunchFailure

NHI = "https://standards.digital.health.nz/ns/nhi-id"
CONTEXT = {"patientId": "14e52e16", "facilityCode": "F2N060-E", "providerId": "PRV123"}


@pytest.mark.parametrize(
    ("created", "utc"),
    [
        ("2026-12-04T04:04:05+13:00", datetime(2026, 12, 3, 15, 4, 5, tzinfo=UTC)),
        ("2026-12-03T15:04:05Z", datetime(2026, 12, 3, 15, 4, 5, tzinfo=UTC)),
        # No offset: Medtech's time, Pacific/Auckland (NZDT in December, NZST in July).
        ("2026-12-04T04:04:05", datetime(2026, 12, 3, 15, 4, 5, tzinfo=UTC)),
        ("2026-07-04T12:00:00.123", datetime(2026, 7, 4, 0, 0, 0, 123000, tzinfo=UTC)),
    ],
)
def test_created_time_is_read_as_iso_8601_with_new_zealand_time_when_no_offset(
    created: str, utc: datetime
) -> None:
    decoded = parse_context({**CONTEXT, "createdTime": created})
    assert decoded.created_at == utc
    assert decoded.created_at.utcoffset() is not None
    assert (decoded.patient_id, decoded.facility_code, decoded.provider_id) == (
        "14e52e16",
        "F2N060-E",
        "PRV123",
    )


@pytest.mark.parametrize("patient", [None, ""])
def test_no_patient_is_none(patient: Any) -> None:
    assert (
        parse_context({**CONTEXT, "patientId": patient, "createdTime": "2026-12-03T15:04:05Z"}).patient_id
        is None
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"createdTime": "yesterday"},
        {"createdTime": None},
        {"facilityCode": ""},
        {"facilityCode": "F2N060 E"},
        {"providerId": None},
        {"providerId": "PRV/123"},
        {"patientId": "../admin"},
        {"patientId": 42},
    ],
)
def test_an_answer_of_another_shape_is_an_alex_error(changes: dict[str, Any]) -> None:
    with pytest.raises(LaunchFailure) as failure:
        parse_context({**CONTEXT, "createdTime": "2026-12-03T15:04:05Z", **changes})
    assert failure.value.why == "alex-error"


def patient(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "14e52e16", **fields}


def test_the_official_name_the_nhi_by_its_system_and_the_birth_date() -> None:
    read = parse_patient(
        patient(
            identifier=[{"system": "urn:other", "value": "X1"}, {"system": NHI, "value": "ZZZ0016"}],
            name=[
                {"use": "old", "family": "Brown", "given": ["Jane"]},
                {"use": "usual", "given": ["Janey"], "family": "Smith"},
                {"use": "official", "family": "Smith", "given": ["Jane", "Mary"]},
            ],
            birthDate="1980-04-02",
        ),
        NHI,
    )
    assert (read.id, read.name, read.nhi, read.birth_date) == (
        "14e52e16",
        "Jane Mary Smith",
        "ZZZ0016",
        date(1980, 4, 2),
    )


@pytest.mark.parametrize(
    ("names", "shown"),
    [
        ([{"use": "usual", "text": "Aroha  Ngata"}, {"family": "Other"}], "Aroha Ngata"),
        ([{"use": "old", "family": "Brown"}, {"family": "Ngata", "given": ["Aroha"]}], "Aroha Ngata"),
        ([{"family": "Ngata"}], "Ngata"),
    ],
)
def test_without_an_official_name_the_usual_then_the_first_current_one(names: list[Any], shown: str) -> None:
    assert parse_patient(patient(name=names), NHI).name == shown


@pytest.mark.parametrize("birth", ["1980", "1980-04", "1980-02-30", 19800402])
def test_a_partial_or_impossible_birth_date_is_left_out(birth: Any) -> None:
    read = parse_patient(patient(name=[{"family": "Smith"}], birthDate=birth), NHI)
    assert read.birth_date is None
    assert read.nhi is None


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "OperationOutcome"},
        patient(name=[]),
        patient(name=[{"use": "old", "family": "Brown"}]),
        {"resourceType": "Patient", "name": [{"family": "Smith"}]},
    ],
)
def test_what_is_not_a_named_patient_is_an_alex_error(body: dict[str, Any]) -> None:
    with pytest.raises(LaunchFailure) as failure:
        parse_patient(body, NHI)
    assert failure.value.why == "alex-error"


def test_the_alex_root_is_the_launch_url_or_the_fhir_base_without_fhir() -> None:
    base = {"emr_url": "alex+https://alexapi.medtechglobal.com/FHIR"}
    assert alex_root(Settings(**base)) == "https://alexapi.medtechglobal.com"
    assert alex_root(Settings(**base, alex_launch_url="https://alexapiuat.medtechglobal.com/")) == (
        "https://alexapiuat.medtechglobal.com"
    )
