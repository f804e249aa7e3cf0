"""The `fhir` connector: a commit into a FHIR R4 server (`CONSULTCAM_EMR_URL=fhir+https://host/base`).

Sources: FHIR R4 RESTful API (hl7.org/fhir/R4/http.html: capabilities, transaction, conditional create,
delete), CapabilityStatement.rest.interaction, Bundle transaction-response, OperationOutcome; OAuth 2.0
client credentials (RFC 6749 §4.4, client authentication §2.3.1); HTTP Retry-After (RFC 9110 §10.2.3).

All or nothing:

* Where the CapabilityStatement lists the system interaction `transaction`, the commit is one transaction
  Bundle: the server applies every entry or none.
* Otherwise each resource is a conditional create (`If-None-Exist: identifier=<system>|<image id>`); when
  one fails for good, the resources this commit created (201) are deleted again. Resources that already
  existed (200 on a conditional create: an earlier, interrupted commit put them there) are left alone.

Never twice: every entry is a conditional create on the image id, so a retried request (after a timeout,
a 5xx or a 429) or a repeated commit finds the resource instead of making a second one. That is what makes
retrying a POST safe here.

Retries: 5xx, 429 (waiting at least Retry-After) and timeouts/connection errors, with exponential back-off
and jitter; a 4xx is never retried. With OAuth2, a 401 fetches a new token once and repeats the request
once. Tokens and image bytes are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import logging
import os
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, NoReturn
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import httpx
from fhir.resources.R4B.documentreference import DocumentReference
from pydantic import ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

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
from consultcam.commits.fhir_media import (
    IMAGE_IDENTIFIER_SYSTEM,
    assemble_transaction_bundle,
    build_media,
    bundle_entry,
    check_context,
)
from consultcam.images.processing.documents import DOCUMENT_FORMATS, convert_for_document

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
LOINC = "http://loinc.org"
PHOTOGRAPHIC_IMAGE = {"system": LOINC, "code": "72170-4", "display": "Photographic image"}
RESOURCES = ("Media", "DocumentReference")
_ADMIN = "ask the practice's EMR administrator"

__all__ = ["FhirConnector", "OAuth2ClientCredentials", "build_document_reference"]


@dataclass(frozen=True)
class OAuth2ClientCredentials:
    """OAuth2 client credentials grant (RFC 6749 §4.4); the secret is kept out of repr and logs.

    `client_auth` "basic" sends the client id and secret with HTTP Basic (§2.3.1, the default every
    server must support); "post" sends them in the form body (client_secret_post).
    """

    token_url: str
    client_id: str
    client_secret: str
    scope: str | None = None
    client_auth: str = "basic"

    def __repr__(self) -> str:
        return f"OAuth2ClientCredentials(token_url={self.token_url!r}, client_id={self.client_id!r})"


class _Transient(Exception):
    """A response or error worth retrying: 5xx, 429, timeout, connection error."""

    def __init__(
        self, response: httpx.Response | None = None, error: httpx.TransportError | None = None
    ) -> None:
        super().__init__(f"HTTP {response.status_code}" if response is not None else type(error).__name__)
        self.response = response
        self.error = error


class _Failure(Exception):
    """A request that failed for good. `words` describe it for a GP; `outcome` is the server's text."""

    def __init__(self, words: str, outcome: str, *, status: int | None = None) -> None:
        super().__init__(words)
        self.words = words
        self.outcome = outcome
        self.status = status


class FhirConnector:
    """Commits through a FHIR R4 REST server: one transaction, or conditional creates with compensation."""

    name = "fhir"

    def __init__(
        self,
        base_url: str,
        *,
        resource: str = "Media",
        document_format: str = "jpeg",
        bearer_token: str | None = None,
        oauth: OAuth2ClientCredentials | None = None,
        timeout: float = 30.0,
        attempts: int = 4,
        wait_initial: float = 0.5,
        wait_max: float = 8.0,
        max_retry_after: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if resource not in RESOURCES:
            raise ValueError(f"resource must be one of {', '.join(RESOURCES)}, not {resource!r}")
        if bearer_token and oauth:
            raise ValueError("choose a static bearer token or OAuth2 client credentials, not both")
        self.base_url = base_url.rstrip("/")
        self.resource = resource
        if document_format not in DOCUMENT_FORMATS or (document_format != "jpeg" and resource == "Media"):
            raise ValueError(f"document format {document_format!r} needs resource=DocumentReference")
        self.document_format = document_format
        self._bearer = bearer_token or None
        self._oauth = oauth
        self._timeout = timeout
        self._attempts = max(1, attempts)
        self._wait_initial = wait_initial
        self._wait_max = wait_max
        self._max_retry_after = max_retry_after
        self._transport = transport
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()
        self._supports_transaction: bool | None = None

    def __repr__(self) -> str:  # never the token
        return f"FhirConnector({self.base_url!r}, resource={self.resource!r})"

    @classmethod
    def from_url(cls, url: str, *, env: Mapping[str, str] | None = None, **options: Any) -> FhirConnector:
        """The connector for `fhir+https://host/base[?resource=Media|DocumentReference]` (`fhir+http` too).

        Authentication comes from the environment, never the URL (URLs get logged):
        CONSULTCAM_EMR_BEARER_TOKEN, or CONSULTCAM_EMR_TOKEN_URL + CONSULTCAM_EMR_CLIENT_ID +
        CONSULTCAM_EMR_CLIENT_SECRET (+ CONSULTCAM_EMR_SCOPE) for OAuth2 client credentials.
        Raises ValueError (without the URL in the message) when the URL or settings are not usable.
        """
        env = os.environ if env is None else env
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
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key == "resource":
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
                raise ValueError(f"unknown FHIR connector option {key!r}; expected resource=")
        base = urlunsplit((scheme.removeprefix("fhir+"), parts.netloc, parts.path.rstrip("/"), "", ""))

        bearer = env.get("CONSULTCAM_EMR_BEARER_TOKEN", "").strip() or None
        oauth_values = {
            name: env.get(f"CONSULTCAM_EMR_{name}", "").strip()
            for name in ("TOKEN_URL", "CLIENT_ID", "CLIENT_SECRET", "SCOPE")
        }
        oauth = None
        if any(oauth_values[name] for name in ("TOKEN_URL", "CLIENT_ID", "CLIENT_SECRET")):
            missing = [
                f"CONSULTCAM_EMR_{name}"
                for name in ("TOKEN_URL", "CLIENT_ID", "CLIENT_SECRET")
                if not oauth_values[name]
            ]
            if missing:
                raise ValueError(f"OAuth2 client credentials need {', '.join(missing)} as well")
            oauth = OAuth2ClientCredentials(
                token_url=oauth_values["TOKEN_URL"],
                client_id=oauth_values["CLIENT_ID"],
                client_secret=oauth_values["CLIENT_SECRET"],
                scope=oauth_values["SCOPE"] or None,
            )
        if document_format != "jpeg" and resource != "DocumentReference":
            raise ValueError("format=pdf or tiff needs resource=DocumentReference (a Media is an image)")
        return cls(
            base,
            resource=resource,
            document_format=document_format,
            bearer_token=bearer,
            oauth=oauth,
            **options,
        )

    # -- the port ---------------------------------------------------------------------------------------

    async def check(self) -> None:
        """Readiness: GET [base]/metadata answers a CapabilityStatement; ConnectorUnavailable otherwise."""
        try:
            async with self._client() as client:
                self._supports_transaction = await self._read_capabilities(client)
        except _Failure as failure:
            raise ConnectorUnavailable(f"FHIR server: {failure.words} ({failure.outcome})") from None

    async def commit(
        self, context: CommitContext, items: Sequence[CommitItem], progress: ProgressCallback
    ) -> list[ImageResult]:
        """Write every item or none (see the module docstring); one "committed" result per item, in order.

        `resource_id` is "<type>/<id>" on the server. Raises CommitFailed with the server's
        OperationOutcome text per image and a sentence for the GP.
        """
        if not items:
            raise CommitFailed("There are no photos to commit. Take or choose a photo first.", [])
        entries = await self._entries(context, items)
        async with self._client() as client:
            try:
                if self._supports_transaction is None:
                    self._supports_transaction = await self._read_capabilities(client)
            except _Failure as failure:
                raise CommitFailed(
                    f"{failure.words}: {failure.outcome}. Nothing was saved; {_what_to_do(failure)}",
                    all_failed(items, failure.outcome),
                ) from None
            if self._supports_transaction:
                return await self._commit_transaction(client, context, items, entries, progress)
            return await self._commit_one_by_one(client, items, entries, progress)

    # -- the two ways -----------------------------------------------------------------------------------

    async def _commit_transaction(
        self,
        client: httpx.AsyncClient,
        context: CommitContext,
        items: Sequence[CommitItem],
        entries: list[dict[str, Any]],
        progress: ProgressCallback,
    ) -> list[ImageResult]:
        try:
            bundle = await asyncio.to_thread(assemble_transaction_bundle, context, entries)
        except ValueError as exc:
            raise preparation_failed(items, str(exc), "the patient record") from exc
        try:
            response = await self._send(client, "POST", self.base_url, json=bundle)
            _raise_for_status(response, "The patient record system refused the photos")
            results = self._transaction_results(response, items)
        except _Failure as failure:
            if failure.status is None or failure.status >= 500 or failure.status == 429:
                # No answer, or a server error: a transaction is atomic, and a repeat finds what was saved.
                tail = "Nothing was saved, or if it was, committing again will not save the photos twice"
            else:
                tail = "Nothing was saved"
            raise CommitFailed(
                f"{failure.words}: {failure.outcome}. {tail}; {_what_to_do(failure)}",
                all_failed(items, failure.outcome),
            ) from None
        await progress(len(items), len(items))
        return results

    def _transaction_results(
        self, response: httpx.Response, items: Sequence[CommitItem]
    ) -> list[ImageResult]:
        body = _json(response)
        answers = body.get("entry") if isinstance(body, dict) else None
        if (
            not isinstance(body, dict)
            or body.get("resourceType") != "Bundle"
            or not isinstance(answers, list)
            or len(answers) != len(items)
        ):
            raise _Failure(
                "The patient record system gave an answer consultcam does not understand",
                "the transaction-response Bundle is missing or has the wrong number of entries",
                status=response.status_code,
            )
        results = []
        for item, answer in zip(items, answers, strict=True):
            reply = answer.get("response") if isinstance(answer, dict) else None
            status = str(reply.get("status", "")) if isinstance(reply, dict) else ""
            if not status.startswith(("200", "201")):
                outcome = _outcome_text(reply.get("outcome") if isinstance(reply, dict) else None)
                raise _Failure(
                    "The patient record system did not save every photo",
                    outcome or f"entry status {status or 'missing'}",
                    status=response.status_code,
                )
            location = reply.get("location") if isinstance(reply, dict) else None
            resource_id = self._resource_id(location) or _id_of(answer.get("resource"))
            results.append(ImageResult(item.image_id, "committed", resource_id=resource_id))
        return results

    async def _commit_one_by_one(
        self,
        client: httpx.AsyncClient,
        items: Sequence[CommitItem],
        entries: list[dict[str, Any]],
        progress: ProgressCallback,
    ) -> list[ImageResult]:
        created: list[str] = []  # resource ids this commit made (201), to remove if a later one fails
        found: dict[int, str] = {}  # item index → resource an earlier attempt made (200): left alone
        results: list[ImageResult] = []
        for index, (item, entry) in enumerate(zip(items, entries, strict=True)):
            try:
                response = await self._send(
                    client,
                    "POST",
                    f"{self.base_url}/{self.resource}",
                    json=entry["resource"],
                    headers={"If-None-Exist": entry["request"]["ifNoneExist"]},
                )
                _raise_for_status(response, f"The patient record system refused {_photo_name(item)}")
                resource_id = self._resource_id(response.headers.get("location")) or _id_of(_json(response))
                if response.status_code == 201:
                    if resource_id is None:
                        raise _Failure(
                            "The patient record system saved a photo without saying where",
                            "201 Created without a Location header",
                            status=201,
                        )
                    created.append(resource_id)
                else:
                    found[index] = resource_id or "an existing resource"
            except _Failure as failure:
                await self._compensate(client, items, index, failure, created, found)
            results.append(ImageResult(item.image_id, "committed", resource_id=resource_id))
            try:
                await progress(index + 1, len(items))
            except Exception:
                await self._delete_all(client, created)  # all or nothing, even when progress fails
                raise
        return results

    async def _compensate(
        self,
        client: httpx.AsyncClient,
        items: Sequence[CommitItem],
        failed_index: int,
        failure: _Failure,
        created: list[str],
        found: dict[int, str],
    ) -> NoReturn:
        """Delete what this attempt created, newest first, then raise CommitFailed saying what is left:
        resources it could not delete, and those `found` from an earlier attempt of the same commit (an
        interrupted one), which are the record's now and stay (a retry finds them again)."""
        left = await self._delete_all(client, created)
        failed_item = items[failed_index]
        if failure.status is None or failure.status >= 500 or failure.status == 429:
            tail = "committing again will not save any photo twice"
        else:
            tail = "correct the problem and commit again, or " + _ADMIN
        detail = f"{failure.words}: {failure.outcome}. "
        if left:
            photos = "photo that was" if len(left) == 1 else "photos that were"
            detail += (
                f"The other photos were not saved, and {len(left)} {photos} already saved could not be "
                f"removed: {', '.join(left)}; {_ADMIN} to delete "
                f"{'it' if len(left) == 1 else 'them'}, then commit again."
            )
        elif found:
            photos = "photo" if len(found) == 1 else "photos"
            detail += (
                f"This time nothing was saved, but {len(found)} {photos} saved by an earlier, interrupted "
                f"attempt of this commit {'is' if len(found) == 1 else 'are'} in the record "
                f"({', '.join(found.values())}); {tail}: those are not saved twice."
            )
        else:
            detail += f"Nothing was saved; {tail}."
        not_saved = f"not saved because {_photo_name(failed_item)} could not be saved"
        if left:
            not_saved += f"; photos left in the record that must be removed: {', '.join(left)}"

        def why(index: int) -> str:
            if index == failed_index:
                return failure.outcome
            if index in found:
                return f"already in the record from an earlier, interrupted attempt ({found[index]})"
            return not_saved

        results = [ImageResult(item.image_id, "failed", error=why(index)) for index, item in enumerate(items)]
        raise CommitFailed(detail, results)

    async def _delete_all(self, client: httpx.AsyncClient, created: list[str]) -> list[str]:
        """Delete `created`, newest first; returns the ids that could not be deleted, in creation order."""
        left: list[str] = []
        for resource_id in reversed(created):
            try:
                response = await self._send(client, "DELETE", f"{self.base_url}/{resource_id}")
                if response.status_code not in (404, 410):  # already gone is what we want
                    _raise_for_status(response, "The patient record system refused a deletion")
            except _Failure as delete_failure:
                log.warning("compensating delete of %s failed: %s", resource_id, delete_failure.outcome)
                left.append(resource_id)
        left.reverse()
        return left

    # -- building ---------------------------------------------------------------------------------------

    async def _entries(self, context: CommitContext, items: Sequence[CommitItem]) -> list[dict[str, Any]]:
        """One conditional-create transaction entry per item; CommitFailed listing every photo's problem."""
        try:
            check_context(context)
        except ValueError as exc:
            raise preparation_failed(items, str(exc), "the patient record") from exc
        build = (
            bundle_entry
            if self.resource == "Media"
            else functools.partial(document_reference_entry, fmt=self.document_format)
        )
        entries: list[dict[str, Any]] = []
        errors: dict[int, str] = {}
        for index, item in enumerate(items):
            try:
                entries.append(await asyncio.to_thread(build, context, item))
            except ValueError as exc:
                errors[index] = str(exc)
        if errors:
            raise preparation_failed(items, errors, "the patient record")
        return entries

    # -- HTTP -------------------------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=self._timeout,
            transport=self._transport,
            headers={"Accept": FHIR_JSON, "User-Agent": "consultcam"},
            follow_redirects=False,
        )

    async def _read_capabilities(self, client: httpx.AsyncClient) -> bool:
        """Whether the server's CapabilityStatement lists the system interaction `transaction`."""
        response = await self._send(client, "GET", f"{self.base_url}/metadata")
        _raise_for_status(response, "The patient record system did not describe itself")
        body = _json(response)
        if not isinstance(body, dict) or body.get("resourceType") != "CapabilityStatement":
            raise _Failure(
                "The patient record system did not describe itself",
                "GET metadata did not return a CapabilityStatement",
                status=response.status_code,
            )
        for rest in body.get("rest") or []:
            if not isinstance(rest, dict) or rest.get("mode", "server") != "server":
                continue
            for interaction in rest.get("interaction") or []:
                if isinstance(interaction, dict) and interaction.get("code") == "transaction":
                    return True
        return False

    async def _send(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One FHIR request with retries (5xx, 429, timeouts) and, with OAuth2, one token refresh on 401.

        Returns the final response (which may still be a 5xx or 429 after the last attempt); raises
        _Failure when the server could not be reached at all.
        """
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._attempts),
                wait=self._wait,
                retry=retry_if_exception_type(_Transient),
                reraise=True,
            ):
                with attempt:
                    response = await self._authorised(client, method, url, json=json, headers=headers)
                    if response.status_code == 429 or response.status_code >= 500:
                        log.warning("FHIR %s %s: HTTP %s, retrying", method, _path(url), response.status_code)
                        raise _Transient(response=response)
                    return response
        except _Transient as transient:
            if transient.response is not None:
                return transient.response
            raise _Failure(
                "The patient record system could not be reached",
                _transport_words(transient.error),
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _authorised(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        *,
        json: Any,
        headers: dict[str, str] | None,
    ) -> httpx.Response:
        request_headers = dict(headers or {})
        if json is not None:
            request_headers["Content-Type"] = FHIR_JSON
        for refreshed in (False, True):
            token = await self._access_token(client, refresh=refreshed)
            if token:
                request_headers["Authorization"] = f"Bearer {token}"
            try:
                response = await client.request(method, url, json=json, headers=request_headers)
            except httpx.TransportError as exc:
                log.warning("FHIR %s %s: %s, retrying", method, _path(url), type(exc).__name__)
                raise _Transient(error=exc) from exc
            if response.status_code != 401 or self._oauth is None or refreshed:
                return response
            log.info("FHIR %s %s: 401, fetching a new access token once", method, _path(url))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _access_token(self, client: httpx.AsyncClient, *, refresh: bool) -> str | None:
        if self._oauth is None:
            return self._bearer
        async with self._token_lock:
            if refresh or self._token is None or time.monotonic() >= self._token_expires:
                self._token, self._token_expires = await self._fetch_token(client, self._oauth)
            return self._token

    async def _fetch_token(
        self, client: httpx.AsyncClient, oauth: OAuth2ClientCredentials
    ) -> tuple[str, float]:
        """POST the client credentials grant (RFC 6749 §4.4.2); (token, monotonic expiry with a margin)."""
        form = {"grant_type": "client_credentials"}
        if oauth.scope:
            form["scope"] = oauth.scope
        headers = {"Accept": "application/json"}
        if oauth.client_auth == "post":
            form |= {"client_id": oauth.client_id, "client_secret": oauth.client_secret}
        else:  # §2.3.1: form-urlencode id and secret, then Basic
            pair = f"{quote(oauth.client_id, safe='')}:{quote(oauth.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._attempts),
                wait=self._wait,
                retry=retry_if_exception_type(_Transient),
                reraise=True,
            ):
                with attempt:
                    try:
                        response = await client.post(oauth.token_url, data=form, headers=headers)
                    except httpx.TransportError as exc:
                        raise _Transient(error=exc) from exc
                    if response.status_code == 429 or response.status_code >= 500:
                        raise _Transient(response=response)
        except _Transient as transient:
            if transient.response is None:
                raise _Failure(
                    "The patient record system's sign-in service could not be reached",
                    _transport_words(transient.error),
                ) from None
            response = transient.response
        body = _json(response)
        token = body.get("access_token") if isinstance(body, dict) else None
        if response.status_code != 200 or not isinstance(token, str) or not token:
            error = body.get("error") if isinstance(body, dict) else None
            raise _Failure(
                "The patient record system did not accept consultcam's sign-in",
                f"token request answered HTTP {response.status_code}" + (f" ({error})" if error else ""),
                status=401 if response.status_code < 500 else response.status_code,
            )
        expires_in = body.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else 300.0
        margin = min(60.0, lifetime / 10)
        return token, time.monotonic() + lifetime - margin

    def _wait(self, state: RetryCallState) -> float:
        """Exponential back-off with full jitter, and never less than the server's Retry-After."""
        backoff = wait_random_exponential(multiplier=self._wait_initial, max=self._wait_max)(state)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Transient) and exc.response is not None:
            retry_after = _retry_after(exc.response.headers.get("retry-after"))
            if retry_after is not None:
                return max(backoff, min(retry_after, self._max_retry_after)) + random.uniform(0, 0.05)  # noqa: S311
        return backoff

    def _resource_id(self, location: Any) -> str | None:
        """'Media/123/_history/1' or '[base]/Media/123/_history/1' → 'Media/123'."""
        if not isinstance(location, str) or not location:
            return None
        path = location.split("?", 1)[0]
        if path.startswith(self.base_url + "/"):
            path = path[len(self.base_url) + 1 :]
        elif "://" in path:
            path = urlsplit(path).path
        parts = [part for part in path.split("/") if part]
        if "_history" in parts:
            parts = parts[: parts.index("_history")]
        if len(parts) < 2:
            return None
        return f"{parts[-2]}/{parts[-1]}"


# -- DocumentReference ----------------------------------------------------------------------------------


def build_document_reference(context: CommitContext, item: CommitItem, fmt: str = "jpeg") -> dict[str, Any]:
    """The image as a FHIR R4 DocumentReference (type LOINC 72170-4 "Photographic image", status current).

    Carries the same identifier, subject, encounter and Attachment as build_media (which validates the
    input); author is the practitioner, date the commit time, description the label and body site. `fmt`
    "pdf" or "tiff" converts the attachment for inboxes that take only those (contentType, size and SHA-1
    hash follow the converted bytes; FHIR R4 Attachment). Raises ValueError when the result is not valid.
    """
    media = build_media(context, item)
    if fmt != "jpeg":
        title = media["content"].get("title", "Clinical photograph")
        converted, content_type = convert_for_document(item.jpeg, fmt, title=title)
        media["content"] = {
            **media["content"],
            "contentType": content_type,
            "data": base64.b64encode(converted).decode("ascii"),
            "size": len(converted),
            "hash": base64.b64encode(hashlib.sha1(converted).digest()).decode("ascii"),  # noqa: S324 (FHIR R4 Attachment.hash is SHA-1)
        }
    description = [note["text"] for note in media.get("note", [])[:1]]
    if site := media.get("bodySite", {}).get("text"):
        description.append(site)
    document: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "identifier": media["identifier"],
        "status": "current",
        "docStatus": "final",
        "type": {"coding": [PHOTOGRAPHIC_IMAGE], "text": "Photographic image"},
        "subject": media["subject"],
        "date": media["issued"],
        "content": [{"attachment": media["content"]}],
        "context": {"encounter": [media["encounter"]], "period": {"start": media["createdDateTime"]}},
    }
    if "operator" in media:
        document["author"] = [media["operator"]]
    if description:
        document["description"] = " — ".join(description)
    try:
        DocumentReference.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()[:5]
        )
        raise ValueError(
            f"{_photo_name(item)}: the DocumentReference is not valid FHIR R4 ({problems})"
        ) from exc
    return document


def document_reference_entry(context: CommitContext, item: CommitItem, fmt: str = "jpeg") -> dict[str, Any]:
    """A transaction entry that creates the DocumentReference unless one with the image id exists."""
    document = build_document_reference(context, item, fmt)
    image_id = document["identifier"][0]["value"]
    return {
        "fullUrl": f"urn:uuid:{image_id}",
        "resource": document,
        "request": {
            "method": "POST",
            "url": "DocumentReference",
            "ifNoneExist": f"identifier={IMAGE_IDENTIFIER_SYSTEM}|{image_id}",
        },
    }


# -- small helpers --------------------------------------------------------------------------------------


def _raise_for_status(response: httpx.Response, refused: str) -> None:
    """_Failure unless 2xx: the OperationOutcome's words, and a sentence for the GP."""
    status = response.status_code
    if 200 <= status < 300:
        return
    outcome = _outcome_text(_json(response)) or f"HTTP {status} {response.reason_phrase}".strip()
    if status in (401, 403):
        words = "The patient record system did not accept consultcam's sign-in"
    elif status == 429:
        words = "The patient record system is too busy right now"
    elif status >= 500:
        words = "The patient record system is having problems"
    else:
        words = refused
    raise _Failure(words, outcome, status=status)


def _what_to_do(failure: _Failure) -> str:
    if failure.status in (401, 403):
        return "ask the practice's IT support to check consultcam's EMR connection settings."
    if failure.status is None:
        return "check the practice's network and try again."
    if failure.status >= 500 or failure.status == 429:
        return "try again in a few minutes."
    return f"correct the problem and commit again, or {_ADMIN}."


def _outcome_text(body: Any) -> str | None:
    """An OperationOutcome's issue[].diagnostics or details.text, joined; None when it is not one."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return None
    texts = []
    for issue in body.get("issue") or []:
        if not isinstance(issue, dict):
            continue
        details = issue.get("details") if isinstance(issue.get("details"), dict) else {}
        text = issue.get("diagnostics") or details.get("text")
        if not text:
            codings = details.get("coding") or []
            text = next((c.get("display") for c in codings if isinstance(c, dict) and c.get("display")), None)
        if isinstance(text, str) and text.strip():
            texts.append(" ".join(text.split()))
    return "; ".join(texts)[:500] or None


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _id_of(resource: Any) -> str | None:
    if isinstance(resource, dict) and resource.get("resourceType") and resource.get("id"):
        return f"{resource['resourceType']}/{resource['id']}"
    return None


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: delay-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def _transport_words(error: httpx.TransportError | None) -> str:
    if isinstance(error, httpx.TimeoutException):
        return "it did not answer in time"
    if isinstance(error, httpx.ConnectError):
        return "the connection was refused or the server was not found"
    return f"the connection failed ({type(error).__name__})"


def _path(url: str) -> str:
    """The URL's path only, for logs (no query)."""
    return urlsplit(url).path or "/"


def _photo_name(item: CommitItem) -> str:
    label = item.metadata.get("label") if isinstance(item.metadata, dict) else None
    if isinstance(label, str) and label.strip():
        return f"photo {label.strip()!r}"
    return f"photo {str(item.image_id)[:8]}"
