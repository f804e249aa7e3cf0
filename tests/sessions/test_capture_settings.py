"""The capture rules a practice chooses (issue 5): consent first, the metadata every photo needs before a
commit, and whether the phone may commit. Read from the environment as deployments set them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from consultcam.config import Settings

NAMES = ("CONSULTCAM_CONSENT_REQUIRED", "CONSULTCAM_PHONE_CAN_COMMIT", "CONSULTCAM_REQUIRED_METADATA")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)


def test_the_defaults_ask_for_consent_and_a_body_site_and_keep_commits_on_the_desktop() -> None:
    settings = Settings()
    assert settings.consent_required is True
    assert settings.phone_can_commit is False
    assert settings.required_metadata == ("bodySite",)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bodySite", ("bodySite",)),
        ("bodySite,laterality", ("bodySite", "laterality")),
        (" label , view ", ("label", "view")),
        ("BODYSITE,Laterality", ("bodySite", "laterality")),  # any case, the API's spelling kept
        ("bodySite,bodySite,view", ("bodySite", "view")),
        ("bodySite,laterality,view,label", ("bodySite", "laterality", "view", "label")),
        ("", ()),
        (" , ", ()),
    ],
)
def test_required_metadata_is_a_comma_list(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: tuple
) -> None:
    monkeypatch.setenv("CONSULTCAM_REQUIRED_METADATA", value)
    assert Settings().required_metadata == expected


@pytest.mark.parametrize("value", ["colour", "bodySite,notes", "body site", "bodySite;laterality"])
def test_an_unknown_field_is_a_settings_error_that_names_the_allowed_ones(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CONSULTCAM_REQUIRED_METADATA", value)
    with pytest.raises(ValidationError) as raised:
        Settings()
    message = str(raised.value)
    assert "CONSULTCAM_REQUIRED_METADATA" in message
    assert "bodySite, laterality, view, label" in message


@pytest.mark.parametrize(("value", "expected"), [("false", False), ("0", False), ("true", True), ("1", True)])
def test_switches_read_the_usual_spellings(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv("CONSULTCAM_CONSENT_REQUIRED", value)
    monkeypatch.setenv("CONSULTCAM_PHONE_CAN_COMMIT", value)
    settings = Settings()
    assert (settings.consent_required, settings.phone_can_commit) == (expected, expected)


def test_a_switch_that_is_not_a_boolean_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSULTCAM_PHONE_CAN_COMMIT", "sometimes")
    with pytest.raises(ValidationError, match="phone_can_commit"):
        Settings()
