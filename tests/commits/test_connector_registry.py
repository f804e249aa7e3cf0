"""The connector registry: the port imports no adapter, each scheme gets its connector with the credentials
from the settings, and those credentials never show in a repr."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import SecretStr

import consultcam.commits.connectors.base as base
from consultcam.commits.connectors.alex import AlexConnector
from consultcam.commits.connectors.dicomweb import DicomWebConnector
from consultcam.commits.connectors.export import ExportConnector
from consultcam.commits.connectors.fhir import FhirConnector
from consultcam.commits.connectors.registry import connector_from_url, fhir_credentials
from consultcam.config import Settings

SECRET = "s3cret-value"


def test_the_port_imports_no_adapter() -> None:
    tree = ast.parse(Path(base.__file__).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    assert not [name for name in imported if name.startswith("consultcam.commits.")]


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("export://", ExportConnector),
        ("fhir+https://emr.example/fhir", FhirConnector),
        ("alex+https://alex.example/FHIR", AlexConnector),
        ("dicomweb+https://pacs.example/dicom-web", DicomWebConnector),
    ],
)
def test_each_scheme_gets_its_connector_with_the_settings_credentials(
    url: str, kind: type, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        emr_token_url="https://login.example/token",
        emr_client_id="consultcam",
        emr_client_secret=SecretStr(SECRET),
        alex_token_url="https://login.example/alex",
        alex_client_id="practice",
        alex_client_secret=SecretStr(SECRET),
        alex_scope="patient/Media.write",
    )
    connector = connector_from_url(url, settings)
    assert isinstance(connector, kind)
    assert SECRET not in repr(connector)
    assert SECRET not in repr(settings)


def test_settings_credentials_are_trimmed_and_a_blank_one_is_unset() -> None:
    settings = Settings(emr_bearer_token=SecretStr(f"  {SECRET}  "), emr_client_secret=SecretStr("   "))
    assert fhir_credentials(settings) == (SECRET, None)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://emr.example", "unsupported EMR URL scheme 'ftp'"),
        ("emr.example/fhir", "must look like scheme://"),
    ],
)
def test_an_unknown_or_missing_scheme_is_refused(url: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        connector_from_url(url, Settings(data_dir=tmp_path))


def test_partial_oauth_settings_name_what_is_missing() -> None:
    settings = Settings(emr_token_url="https://login.example/token")
    with pytest.raises(ValueError, match="CONSULTCAM_EMR_CLIENT_ID, CONSULTCAM_EMR_CLIENT_SECRET as well"):
        fhir_credentials(settings)


def test_a_bad_fhir_url_is_reported_before_the_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, emr_token_url="https://login.example/token")
    with pytest.raises(ValueError, match="must not carry a user name or password"):
        connector_from_url("fhir+https://user:pw@emr.example/fhir", settings)
