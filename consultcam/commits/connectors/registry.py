"""Which connector a `CONSULTCAM_EMR_URL` means, built with its credentials from the settings.

The one place that knows every adapter: `base.py` is the port and imports none of them. Credentials come from
typed `Settings` fields (`CONSULTCAM_EMR_*`, `CONSULTCAM_ALEX_*`; SecretStr for the secrets), never from the
URL, which gets logged.
"""

from __future__ import annotations

from consultcam.commits.connectors import alex, fhir
from consultcam.commits.connectors.alex import AlexConnector
from consultcam.commits.connectors.base import Connector, GrantAccess, TokensRefreshed
from consultcam.commits.connectors.dicomweb import DicomWebConnector
from consultcam.commits.connectors.export import ExportConnector
from consultcam.commits.connectors.fhir import FhirConnector
from consultcam.commits.connectors.smart import SmartConnector
from consultcam.config import Settings
from consultcam.kit.oauth2 import ClientCredentials

__all__ = ["alex_credentials", "connector_for_grant", "connector_from_url", "fhir_credentials"]


def connector_from_url(url: str, settings: Settings) -> Connector:
    """The connector for `url` (normally `settings.emr_url`), with the credentials `settings` hold.

    `export://` alone means DATA_DIR/outbox (see ExportConnector.from_url for the path rule). Raises
    ValueError "unsupported EMR URL scheme …" for an unknown scheme, or the connector's own ValueError for an
    unusable URL or missing credentials. The URL itself is never put in a message: it may carry credentials.
    """
    scheme, sep, _ = url.partition("://")
    scheme = scheme.strip().lower()
    if not sep:
        raise ValueError("EMR URL must look like scheme://…, for example export://outbox")
    if scheme == "export":
        return ExportConnector.from_url(url, data_dir=settings.data_dir)
    if scheme in ("dicomweb+http", "dicomweb+https"):
        return DicomWebConnector.from_url(url)
    if scheme in ("fhir+https", "fhir+http"):
        target = fhir.parse_url(url)  # the URL's problems first, then the settings'
        bearer, oauth = fhir_credentials(settings)
        return FhirConnector(
            target.base_url,
            resource=target.resource,
            document_format=target.document_format,
            bearer_token=bearer,
            oauth=oauth,
            max_request_bytes=settings.fhir_max_request_bytes,
            max_transaction_entries=settings.fhir_max_transaction_entries,
            profile=target.profile,
            mhd_source_id=settings.mhd_source_id or None,
        )
    if scheme in ("alex+https", "alex+http"):
        where = alex.parse_target(url)  # the URL's problems first, then the settings'
        return AlexConnector(
            where.base_url,
            oauth=alex_credentials(settings),
            resource=where.resource,
            document_format=where.document_format,
        )
    raise ValueError(f"unsupported EMR URL scheme {scheme!r}: expected export://DIR")


def connector_for_grant(settings: Settings, grant: GrantAccess, on_refresh: TokensRefreshed) -> Connector:
    """The connector for a session opened by a SMART launch (issue 13): into the grant's EHR with its
    tokens, whatever CONSULTCAM_EMR_URL says; a refresh authenticates as the launch did (Basic with
    CONSULTCAM_SMART_CLIENT_SECRET when set, else the client id alone). See `connectors.smart`."""
    secret = settings.smart_client_secret.get_secret_value() if settings.smart_client_secret else None
    return SmartConnector(grant, on_refresh, client_secret=secret)


def fhir_credentials(settings: Settings) -> tuple[str | None, ClientCredentials | None]:
    """(static bearer token, OAuth2 client credentials) for the `fhir` connector: either, or neither.

    OAuth2 needs CONSULTCAM_EMR_TOKEN_URL, _CLIENT_ID and _CLIENT_SECRET together (_SCOPE optional); raises
    ValueError naming the missing ones when only some are set.
    """
    bearer = settings.emr_bearer_token.get_secret_value() if settings.emr_bearer_token else None
    secret = settings.emr_client_secret.get_secret_value() if settings.emr_client_secret else ""
    values = {
        "CONSULTCAM_EMR_TOKEN_URL": settings.emr_token_url,
        "CONSULTCAM_EMR_CLIENT_ID": settings.emr_client_id,
        "CONSULTCAM_EMR_CLIENT_SECRET": secret,
    }
    if not any(values.values()):
        return bearer or None, None
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise ValueError(f"OAuth2 client credentials need {', '.join(missing)} as well")
    oauth = ClientCredentials(
        token_url=settings.emr_token_url,
        client_id=settings.emr_client_id,
        client_secret=secret,
        scope=settings.emr_scope or None,
    )
    return bearer or None, oauth


def alex_credentials(settings: Settings) -> ClientCredentials:
    """Medtech ALEX's OAuth2 client credentials: CONSULTCAM_ALEX_TOKEN_URL, _CLIENT_ID, _CLIENT_SECRET and
    _SCOPE, all required; raises ValueError naming the missing ones."""
    secret = settings.alex_client_secret.get_secret_value() if settings.alex_client_secret else ""
    values = {
        "CONSULTCAM_ALEX_TOKEN_URL": settings.alex_token_url,
        "CONSULTCAM_ALEX_CLIENT_ID": settings.alex_client_id,
        "CONSULTCAM_ALEX_CLIENT_SECRET": secret,
        "CONSULTCAM_ALEX_SCOPE": settings.alex_scope,
    }
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise ValueError(f"Medtech ALEX needs {', '.join(missing)} to be set")
    return ClientCredentials(
        token_url=settings.alex_token_url,
        client_id=settings.alex_client_id,
        client_secret=secret,
        scope=settings.alex_scope,
    )
