"""The `alex` connector: Medtech ALEX, Medtech Evolution's FHIR R4 API (`CONSULTCAM_EMR_URL=alex+https://…/FHIR`).

A FhirClient configured with Medtech's policy (composed, not a FhirConnector subclass). The Medtech-specific
values (header names, NHI system, image limit, time zone) are data, read from `consultcam/data/medtech.json`;
body-site and laterality codes and words come from `consultcam/data/body-sites.json` through
`consultcam.terminology`, never from a client. Facts: shared/DESIGN.md, "Medtech ALEX facts".

What a commit writes, chosen by the URL's options (`parse_target`):
* default (`alex+https://…/FHIR`, or `?format=tiff`): each photo filed in the patient's **Inbox Scan** as a
  DocumentReference with a TIFF under 1 MB (`alex_inbox.py`), where Medtech files scanned images and
  referral forms read them;
* `?format=pdf`: the same with the photo as a one-page PDF;
* `?resource=Media`: a FHIR Media with the JPEG, one conditional create at a time with compensation
  (`alex_media.py`, `fhir_commit.commit_one_by_one`): Medtech shows it only as a "View link".

* Authentication: OAuth2 client credentials only, from CONSULTCAM_ALEX_TOKEN_URL, CONSULTCAM_ALEX_CLIENT_ID,
  CONSULTCAM_ALEX_CLIENT_SECRET and CONSULTCAM_ALEX_SCOPE (all required); the token is cached until shortly
  before it expires (`consultcam.kit.oauth2`).
* Every request to ALEX carries `mt-facilityid` (the session's facility) and a fresh `mt-correlationid`
  (uuid4); the token request goes to the identity provider and carries neither. A commit without a
  facility fails before any request.
* No transactions are assumed, whatever the CapabilityStatement says.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlunsplit

import httpx

from consultcam.commits.connectors.alex_inbox import (
    FORMATS,
    InboxDocument,
    attachment_title,
    commit_to_inbox,
    inbox_document,
    no_nhi_retry_refused,
)
from consultcam.commits.connectors.alex_media import media_entries, site_note
from consultcam.commits.connectors.base import (
    CommitContext,
    CommitFailed,
    CommitItem,
    ConnectorUnavailable,
    ImageResult,
    ProgressCallback,
    all_failed,
    preparation_failed,
    split_server_url,
)
from consultcam.commits.connectors.fhir import FHIR_RETRY
from consultcam.commits.connectors.fhir_client import FhirClient, FhirFailure, FhirSession, RequestHeaders
from consultcam.commits.connectors.fhir_commit import commit_one_by_one, failed_before_writing
from consultcam.commits.fhir_media import check_context
from consultcam.kit.http import RetryPolicy
from consultcam.kit.oauth2 import ClientCredentials

__all__ = [
    "ENV_NAMES",
    "NO_FACILITY",
    "RESOURCES",
    "AlexConnector",
    "AlexTarget",
    "medtech",
    "parse_target",
    "parse_url",
    "site_note",
]

#: The settings ALEX needs, all of them (read into `Settings.alex_*`; the registry passes them on).
ENV_NAMES = (
    "CONSULTCAM_ALEX_TOKEN_URL",
    "CONSULTCAM_ALEX_CLIENT_ID",
    "CONSULTCAM_ALEX_CLIENT_SECRET",
    "CONSULTCAM_ALEX_SCOPE",
)
NO_FACILITY = "This session has no facility; launch consultcam from Medtech so it knows the practice"
#: What a commit writes: DocumentReference (Inbox Scan, the default) or Media.
RESOURCES = ("DocumentReference", "Media")
_URL = "CONSULTCAM_EMR_URL"


@cache
def medtech() -> dict[str, Any]:
    """The Medtech mappings from consultcam/data/medtech.json (packaged data)."""
    text = resources.files("consultcam").joinpath("data", "medtech.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


class AlexConnector:
    """Commits into Medtech ALEX: a FhirClient (OAuth2 client credentials only) with Medtech's policy:
    Inbox Scan DocumentReferences (TIFF, or PDF with `document_format="pdf"`) or, with `resource="Media"`,
    Media; one at a time with compensation, Medtech's headers on every request, its size limit and time
    zone.

    Options as for FhirConnector: `timeout`, `retry` (seconds), `transport`. Raises ValueError for an
    unknown resource or format.
    """

    name = "alex"

    def __init__(
        self,
        base_url: str,
        *,
        oauth: ClientCredentials,
        resource: str = "DocumentReference",
        document_format: str = "tiff",
        timeout: float = 30.0,
        retry: RetryPolicy = FHIR_RETRY,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if oauth is None:
            raise ValueError("Medtech ALEX needs OAuth2 client credentials")
        if resource not in RESOURCES:
            raise ValueError(f"resource must be one of {', '.join(RESOURCES)}, not {resource!r}")
        if document_format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {document_format!r}")
        self.client = FhirClient(base_url, oauth=oauth, retry=retry, timeout=timeout, transport=transport)
        self.base_url = self.client.base_url
        self.resource = resource
        self.document_format = document_format
        self._data = medtech()
        self._described = False  # ALEX answered GET metadata once: it is there and signs us in

    def __repr__(self) -> str:  # never the token
        return f"AlexConnector({self.base_url!r}, resource={self.resource!r})"

    @classmethod
    def from_url(cls, url: str, *, oauth: ClientCredentials, **options: Any) -> AlexConnector:
        """The connector for an `alex+https://` URL (see `parse_target`), signing in with `oauth` (from the
        CONSULTCAM_ALEX_* settings). Raises ValueError (never quoting the URL) when it is not usable."""
        target = parse_target(url)
        return cls(
            target.base_url,
            oauth=oauth,
            resource=target.resource,
            document_format=target.document_format,
            **options,
        )

    # -- the port ---------------------------------------------------------------------------------------

    async def check(self) -> None:
        """Readiness: GET [base]/metadata answers a CapabilityStatement; ConnectorUnavailable otherwise."""
        try:
            async with self.client.session(self._headers(None)) as fhir:
                await fhir.read_capabilities()
                self._described = True
        except FhirFailure as failure:
            raise ConnectorUnavailable(f"FHIR server: {failure.words} ({failure.outcome})") from None

    async def commit(
        self, context: CommitContext, items: Sequence[CommitItem], progress: ProgressCallback
    ) -> list[ImageResult]:
        """Write every photo or none, one at a time with compensation (ALEX is never assumed to take
        transactions). CommitFailed before any request without a valid facility, when a photo cannot be
        made to fit Medtech's limit, or for a retried Inbox Scan commit of a patient without an NHI
        (`alex_inbox`)."""
        facility = (context.facility_id or "").strip()
        if not facility:
            raise CommitFailed(f"{NO_FACILITY}.", all_failed(items, NO_FACILITY))
        if not facility.isprintable() or not facility.isascii():
            problem = "The session's facility id is not valid; launch consultcam from Medtech again"
            raise CommitFailed(f"{problem}.", all_failed(items, problem))
        if not items:
            raise CommitFailed("There are no photos to commit. Take or choose a photo first.", [])
        if self.resource == "Media":
            entries = await media_entries(context, items, self._data)
            async with self.client.session(self._headers(facility)) as fhir:
                await self._describe(fhir, items)
                return await commit_one_by_one(fhir, items, entries, progress, "Media")
        if not (context.patient.nhi or "").strip() and context.attempt > 1:
            extension = FORMATS[self.document_format][1]
            titles = [attachment_title(i, item.metadata or {}, extension) for i, item in enumerate(items, 1)]
            raise no_nhi_retry_refused(items, titles)
        documents = await self._documents(context, items)
        async with self.client.session(self._headers(facility)) as fhir:
            await self._describe(fhir, items)
            try:
                return await commit_to_inbox(fhir, context, items, documents, progress, self.client.retry)
            except FhirFailure as failure:  # the search before anything was written
                raise failed_before_writing(items, failure) from None

    # -- Medtech's policy -------------------------------------------------------------------------------

    async def _describe(self, fhir: FhirSession, items: Sequence[CommitItem]) -> None:
        """GET metadata once per connector: ALEX is there and takes our token, before anything is written."""
        if self._described:
            return
        try:
            await fhir.read_capabilities()
        except FhirFailure as failure:
            raise failed_before_writing(items, failure) from None
        self._described = True

    def _headers(self, facility: str | None) -> RequestHeaders:
        """The request headers ALEX wants on every request (each retry too): the facility, when there is
        one, and a fresh correlation id. The token endpoint gets neither (FhirClient sends them only to
        the FHIR server)."""
        names = self._data["headers"]

        def headers() -> dict[str, str]:
            values = {names["correlation"]: str(uuid.uuid4())}
            if facility:
                values[names["facility"]] = facility
            return values

        return headers

    async def _documents(self, context: CommitContext, items: Sequence[CommitItem]) -> list[InboxDocument]:
        """Every photo as an Inbox Scan DocumentReference, converted off the event loop; CommitFailed
        listing every photo's problem (and the context's) before anything is sent."""
        try:
            check_context(context)
        except ValueError as exc:
            raise preparation_failed(items, str(exc), "Medtech") from exc
        documents: list[InboxDocument] = []
        errors: dict[int, str] = {}
        for index, item in enumerate(items):
            try:
                documents.append(
                    await asyncio.to_thread(
                        inbox_document, context, item, index + 1, self._data, self.document_format
                    )
                )
            except ValueError as exc:
                errors[index] = str(exc)
        if errors:
            raise preparation_failed(items, errors, "Medtech", "retake the photo or commit again")
        return documents


@dataclass(frozen=True)
class AlexTarget:
    """What an `alex+https://` URL says: ALEX's FHIR base URL, what to write and the attachment format."""

    base_url: str
    resource: str = "DocumentReference"
    document_format: str = "tiff"


def parse_target(url: str) -> AlexTarget:
    """`alex+https://host/path/FHIR[?resource=DocumentReference|Media][&format=tiff|pdf]` read and checked
    (`alex+http` only to a loopback address: tests): no user name or password, no #fragment, no other
    option, `format` only for DocumentReference. Raises ValueError naming CONSULTCAM_EMR_URL, never quoting
    the URL or an unknown option's value (it may be a secret)."""
    scheme, parts = split_server_url(
        url,
        schemes=("alex+https", "alex+http"),
        wrong_scheme="a Medtech ALEX URL must start with alex+https://",
        name="the ALEX URL",
        credentials_hint="use the CONSULTCAM_ALEX_CLIENT_* settings",
    )
    if parts.fragment:
        raise ValueError(f"the ALEX URL in {_URL} takes no #fragment")
    if scheme == "alex+http" and not _is_loopback(parts.hostname or ""):
        raise ValueError("alex+http:// is only for a local test server; use alex+https://")
    options: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in ("client_secret", "client_id", "token", "access_token"):
            raise ValueError(
                f"{key}= must not be in {_URL} (it gets logged); use the CONSULTCAM_ALEX_CLIENT_* settings"
            )
        if key not in ("resource", "format"):
            raise ValueError(f"unknown ALEX option {key!r} in {_URL}; expected resource= or format=")
        if key in options:
            raise ValueError(f"{key}= appears twice in {_URL}")
        options[key] = value
    resource = options.get("resource", "DocumentReference")
    if resource not in RESOURCES:
        raise ValueError(
            f"resource= in {_URL} must be DocumentReference (Inbox Scan, the default) or Media, "
            f"not {resource[:40]!r}"
        )
    document_format = options.get("format", "tiff").lower()
    if document_format not in FORMATS:
        raise ValueError(
            f"format= in {_URL} must be tiff (the default) or pdf: Medtech's Inbox Scan takes TIFF images "
            f"and PDF documents only, not {options['format'][:40]!r}"
        )
    if "format" in options and resource == "Media":
        raise ValueError(f"format= in {_URL} is for Inbox Scan; resource=Media sends the JPEG as it is")
    base = urlunsplit((scheme.removeprefix("alex+"), parts.netloc, parts.path.rstrip("/"), "", ""))
    return AlexTarget(base, resource, document_format)


def parse_url(url: str) -> str:
    """The ALEX FHIR base URL (`https://host/path/FHIR`, no trailing slash) of an `alex+https://` URL, its
    options checked as `parse_target` does. Raises ValueError (never quoting the URL)."""
    return parse_target(url).base_url


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
