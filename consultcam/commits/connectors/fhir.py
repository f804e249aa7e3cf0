"""The `fhir` connector: a commit into a FHIR R4 server (`CONSULTCAM_EMR_URL=fhir+https://host/base`).

Composed of a `FhirClient` (the transport: base URL, authentication, retries; `fhir_client.py`), the resource
building (`fhir_media.py` for Media, `fhir_document.py` for DocumentReference) and the two ways of writing
all or nothing (`fhir_commit.py`): where the CapabilityStatement lists the system interaction `transaction`,
one transaction Bundle; otherwise conditional creates with compensation. A commit larger than the server's
request limit sends the photos as Binary first, or in parts (`fhir_limits.py`). `?profile=mhd` publishes
instead as an IHE MHD ITI-65 Provide Document Bundle (`fhir_mhd.py` builds it, `mhd.py` sends it,
`mhd_limits.py` uploads the photos as Binary first when it is larger than the server takes), transactions
only.

Retries: 5xx, 429 (waiting at least Retry-After) and timeouts/connection errors, with exponential back-off
and jitter (`consultcam.kit.http`); a 4xx is never retried. With OAuth2, a 401 fetches a new token once and
repeats the request once (`consultcam.kit.oauth2`). Tokens and image bytes are never logged.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlunsplit

import httpx

from consultcam.commits.connectors.base import (
    CommitContext,
    CommitFailed,
    CommitItem,
    ConnectorUnavailable,
    ImageResult,
    ProgressCallback,
    preparation_failed,
    split_server_url,
)
from consultcam.commits.connectors.fhir_client import Capabilities, FhirClient, FhirFailure, TokenSource
from consultcam.commits.connectors.fhir_commit import failed_before_writing
from consultcam.commits.connectors.fhir_limits import DEFAULT_MAX_REQUEST_BYTES, commit_within_limit
from consultcam.commits.connectors.mhd import (
    MHD_NEEDS_TRANSACTION,
    published_earlier,
    refuse_without_transaction,
)
from consultcam.commits.connectors.mhd_limits import publish_within_limit
from consultcam.commits.fhir_document import document_reference_entry
from consultcam.commits.fhir_media import bundle_entry, check_context
from consultcam.commits.fhir_mhd import build_provide_bundle, document_entries
from consultcam.images.processing.documents import DOCUMENT_FORMATS
from consultcam.kit.http import RetryPolicy
from consultcam.kit.oauth2 import ClientCredentials

__all__ = [
    "FHIR_RETRY",
    "PROFILES",
    "RESOURCES",
    "FhirConnector",
    "FhirTarget",
    "build_entries",
    "parse_url",
]

RESOURCES = ("Media", "DocumentReference")
PROFILES = ("mhd",)
REGISTRY = "the document registry"

#: A FHIR commit's retries: 4 tries, back-off 0.5–8 s, Retry-After honoured up to 30 s (capped, not given up
#: on: the commit is waiting for it).
FHIR_RETRY = RetryPolicy(attempts=4, wait_initial=0.5, wait_max=8.0, max_retry_after=30.0)


class FhirConnector:
    """Commits through a FHIR R4 REST server: one transaction, or conditional creates with compensation.

    `resource` is "Media" or "DocumentReference"; `document_format` "jpeg", or "pdf"/"tiff" for a
    DocumentReference (inboxes that take only those). `profile` "mhd" publishes each commit as an IHE MHD
    ITI-65 Provide Document Bundle of DocumentReference and Binary (needs `resource` DocumentReference and
    "jpeg"). With `choose_resource`, the server's
    CapabilityStatement decides instead: Media where it lists Media as creatable, else DocumentReference (a
    SMART EHR, issue 13). `max_request_bytes` is the largest request body the server takes
    (`CONSULTCAM_FHIR_MAX_REQUEST_BYTES`; a larger commit goes Binary first or in parts: `fhir_limits.py`),
    `max_transaction_entries` the most entries it takes in one transaction (None: no limit).
    `mhd_source_id` is the MHD SubmissionSet's sourceId (`CONSULTCAM_MHD_SOURCE_ID`, `urn:oid:…`; None: one
    made from the facility, `fhir_mhd.source_id_for`).
    The transport options (`bearer_token`, `oauth` or `tokens`, `timeout` in seconds,
    `retry` (default `FHIR_RETRY`), `transport`) build its FhirClient. Raises ValueError for an unusable
    combination.
    """

    name = "fhir"

    def __init__(
        self,
        base_url: str,
        *,
        resource: str = "Media",
        document_format: str = "jpeg",
        bearer_token: str | None = None,
        oauth: ClientCredentials | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy = FHIR_RETRY,
        transport: httpx.AsyncBaseTransport | None = None,
        tokens: TokenSource | None = None,
        choose_resource: bool = False,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_transaction_entries: int | None = None,
        profile: str | None = None,
        mhd_source_id: str | None = None,
    ) -> None:
        if profile is not None and (profile not in PROFILES or choose_resource):
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}, not {profile!r}")
        if profile == "mhd" and (resource != "DocumentReference" or document_format != "jpeg"):
            raise ValueError("profile=mhd publishes JPEG DocumentReferences; leave out resource= and format=")
        if resource not in RESOURCES:
            raise ValueError(f"resource must be one of {', '.join(RESOURCES)}, not {resource!r}")
        if document_format not in DOCUMENT_FORMATS or (document_format != "jpeg" and resource == "Media"):
            raise ValueError(f"document format {document_format!r} needs resource=DocumentReference")
        self.client = FhirClient(
            base_url,
            bearer_token=bearer_token,
            oauth=oauth,
            retry=retry,
            timeout=timeout,
            transport=transport,
            tokens=tokens,
        )
        self.base_url = self.client.base_url
        self.resource = resource
        self.document_format = document_format
        self.choose_resource = choose_resource
        self.max_request_bytes = max_request_bytes
        self.max_transaction_entries = max_transaction_entries
        self.profile = profile
        self.mhd_source_id = mhd_source_id
        self._capabilities: Capabilities | None = None

    def __repr__(self) -> str:  # never the token
        return f"FhirConnector({self.base_url!r}, resource={self.resource!r})"

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        bearer_token: str | None = None,
        oauth: ClientCredentials | None = None,
        **options: Any,
    ) -> FhirConnector:
        """The connector for a `fhir+https://` URL (see `parse_url`), authenticating with `bearer_token` or
        `oauth` (from the settings, never the URL: URLs get logged). Raises ValueError (without the URL in
        the message) when the URL is not usable."""
        target = parse_url(url)
        return cls(
            target.base_url,
            resource=target.resource,
            document_format=target.document_format,
            bearer_token=bearer_token,
            oauth=oauth,
            profile=target.profile,
            **options,
        )

    # -- the port ---------------------------------------------------------------------------------------

    async def check(self) -> None:
        """Readiness: GET [base]/metadata answers a CapabilityStatement (listing `transaction` with
        profile=mhd); ConnectorUnavailable otherwise."""
        try:
            async with self.client.session() as fhir:
                self._capabilities = await fhir.read_capability_statement()
        except FhirFailure as failure:
            raise ConnectorUnavailable(f"FHIR server: {failure.words} ({failure.outcome})") from None
        if self.profile == "mhd" and not self._capabilities.transaction:
            raise ConnectorUnavailable(f"FHIR server: {MHD_NEEDS_TRANSACTION}")

    async def commit(
        self, context: CommitContext, items: Sequence[CommitItem], progress: ProgressCallback
    ) -> list[ImageResult]:
        """Write every item or none (see the module docstring); one "committed" result per item, in order.

        `resource_id` is "<type>/<id>" on the server. Raises CommitFailed with the server's
        OperationOutcome text per image and a sentence for the GP.
        """
        if not items:
            raise CommitFailed("There are no photos to commit. Take or choose a photo first.", [])
        if self.profile == "mhd":
            return await self._publish_mhd(context, items, progress)
        # The photos' problems first, before any request; when the server chooses the resource, after
        # its CapabilityStatement.
        entries = None if self.choose_resource else await build_entries(context, items, self._entry_builder())
        async with self.client.session() as fhir:
            try:
                if self._capabilities is None:
                    self._capabilities = await fhir.read_capability_statement()
            except FhirFailure as failure:
                raise failed_before_writing(items, failure) from None
            if entries is None:
                self.resource = "Media" if "Media" in self._capabilities.creatable else "DocumentReference"
                entries = await build_entries(context, items, self._entry_builder())
            return await commit_within_limit(
                fhir,
                context,
                items,
                entries,
                progress,
                self.resource,
                self._capabilities,
                self.max_request_bytes,
                self.max_transaction_entries,
            )

    async def _publish_mhd(
        self, context: CommitContext, items: Sequence[CommitItem], progress: ProgressCallback
    ) -> list[ImageResult]:
        try:  # the photos' problems first, before any request
            source_id = self.mhd_source_id
            bundle = await asyncio.to_thread(build_provide_bundle, context, items, source_id=source_id)
        except ValueError as exc:
            # Every photo's problem at once, as the other modes say them; else the Bundle's own problem.
            await build_entries(context, items, lambda c, i: document_entries(c, i)[0], REGISTRY)
            raise preparation_failed(items, str(exc), REGISTRY) from exc
        async with self.client.session() as fhir:
            try:
                if self._capabilities is None:
                    self._capabilities = await fhir.read_capability_statement()
            except FhirFailure as failure:
                raise failed_before_writing(items, failure) from None
            refuse_without_transaction(items, self._capabilities)
            if context.attempt > 1 and (found := await published_earlier(fhir, items, bundle)):
                await progress(len(items), len(items))
                return found
            return await publish_within_limit(
                fhir,
                items,
                bundle,
                progress,
                self._capabilities,
                self.max_request_bytes,
                context.attempt,
                self.max_transaction_entries,
            )

    def _entry_builder(self) -> Callable[[CommitContext, CommitItem], dict[str, Any]]:
        if self.resource == "Media":
            return bundle_entry
        return functools.partial(document_reference_entry, fmt=self.document_format)


async def build_entries(
    context: CommitContext,
    items: Sequence[CommitItem],
    build: Callable[[CommitContext, CommitItem], dict[str, Any]] = bundle_entry,
    destination: str = "the patient record",
) -> list[dict[str, Any]]:
    """One conditional-create transaction entry per item, built by `build` off the event loop (base64 and
    validation of a megabyte photo take tens of milliseconds). Raises CommitFailed listing every photo's
    problem (and the context's) before anything is sent."""
    try:
        check_context(context)
    except ValueError as exc:
        raise preparation_failed(items, str(exc), destination) from exc
    entries: list[dict[str, Any]] = []
    errors: dict[int, str] = {}
    for index, item in enumerate(items):
        try:
            entries.append(await asyncio.to_thread(build, context, item))
        except ValueError as exc:
            errors[index] = str(exc)
    if errors:
        raise preparation_failed(items, errors, destination)
    return entries


@dataclass(frozen=True)
class FhirTarget:
    """What a `fhir+https://` URL says: the server's base URL, the resource type, the document format and
    the profile ("mhd" or None)."""

    base_url: str
    resource: str = "Media"
    document_format: str = "jpeg"
    profile: str | None = None


def parse_url(url: str) -> FhirTarget:
    """`fhir+https://host/base[?resource=Media|DocumentReference[&format=pdf|tiff]]` or
    `fhir+https://host/base?profile=mhd` (IHE MHD ITI-65, DocumentReference as JPEG) (`fhir+http` too) read
    and checked: no user name or password, no token in the query, no #fragment. Raises ValueError (never
    quoting the URL)."""
    scheme, parts = split_server_url(
        url,
        schemes=("fhir+https", "fhir+http"),
        wrong_scheme="a FHIR connector URL must start with fhir+https:// (or fhir+http://)",
        name="the FHIR server URL",
        credentials_hint="use CONSULTCAM_EMR_BEARER_TOKEN or the CONSULTCAM_EMR_CLIENT_* settings",
    )
    if parts.fragment:
        raise ValueError("the FHIR server URL must not have a #fragment")
    resource = "Media"
    document_format = "jpeg"
    profile = None
    query = parse_qsl(parts.query, keep_blank_values=True)
    for key, value in query:
        if key == "profile":
            if value.lower() not in PROFILES:
                raise ValueError(f"profile= must be one of {', '.join(PROFILES)}, not {value!r}")
            profile = value.lower()
        elif key == "resource":
            if value not in RESOURCES:
                raise ValueError(f"resource= must be one of {', '.join(RESOURCES)}, not {value!r}")
            resource = value
        elif key == "format":
            document_format = {"jpg": "jpeg", "": "jpeg"}.get(value.lower(), value.lower())
            if document_format not in DOCUMENT_FORMATS:
                raise ValueError(f"format= must be one of {', '.join(DOCUMENT_FORMATS)}, not {value!r}")
        elif key in ("token", "access_token", "client_secret"):
            raise ValueError(
                f"{key}= must not be in the EMR URL (it gets logged); "
                "use CONSULTCAM_EMR_BEARER_TOKEN or CONSULTCAM_EMR_CLIENT_SECRET"
            )
        else:
            raise ValueError(f"unknown FHIR connector option {key!r}; expected resource= or profile=")
    base = urlunsplit((scheme.removeprefix("fhir+"), parts.netloc, parts.path.rstrip("/"), "", ""))
    if profile == "mhd":
        if any(key in ("resource", "format") for key, _ in query):
            raise ValueError("profile=mhd publishes JPEG DocumentReferences; leave out resource= and format=")
        return FhirTarget(base, "DocumentReference", "jpeg", profile)
    if document_format != "jpeg" and resource != "DocumentReference":
        raise ValueError("format=pdf or tiff needs resource=DocumentReference (a Media is an image)")
    return FhirTarget(base, resource, document_format)
