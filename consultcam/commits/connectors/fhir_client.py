"""The FHIR R4 REST transport the `fhir` and `alex` connectors share: base URL, authentication, retries, and
the server's answers read into words a GP understands.

Sources: FHIR R4 RESTful API (hl7.org/fhir/R4/http.html: capabilities, OperationOutcome), OAuth 2.0
client credentials (RFC 6749 §4.4; the cache is `consultcam.kit.oauth2`), retries and Retry-After
(`consultcam.kit.http`).

Authentication is none, a static bearer token, OAuth2 client credentials, or another `TokenSource` (a SMART
launch's grant, `smart.py`); with a token source a 401 fetches a new token once and repeats the request once.
Tokens and image bytes are never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from consultcam.kit.http import RetryPolicy, Unreachable, new_client, send_with_retries
from consultcam.kit.oauth2 import ClientCredentials, TokenCache, TokenRefused, TokenUnreachable

__all__ = [
    "FHIR_JSON",
    "Capabilities",
    "FhirClient",
    "FhirFailure",
    "FhirSession",
    "RequestHeaders",
    "TokenSource",
    "id_of",
    "json_body",
    "outcome_text",
    "raise_for_status",
]

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"

#: Headers added to every request to the FHIR server (each try too), computed per request; never to the
#: token endpoint. ALEX uses it for its facility and correlation id.
RequestHeaders = Callable[[], Mapping[str, str]]


class TokenSource(Protocol):
    """Where a FhirClient's bearer tokens come from (`kit.oauth2.TokenCache` is one): `token(http)` gives a
    valid access token, `token(http, stale=t)` a new one when the server refused `t` (401). Raises
    `kit.oauth2.TokenRefused` or `TokenUnreachable`."""

    async def token(self, client: httpx.AsyncClient, *, stale: str | None = None) -> str: ...


@dataclass(frozen=True)
class Capabilities:
    """What a server's CapabilityStatement says consultcam needs to know: whether it takes a `transaction`
    (system interaction) and the resource types it lists with the `create` interaction."""

    transaction: bool
    creatable: frozenset[str]


class FhirFailure(Exception):
    """A request that failed for good. `words` describe it for a GP; `outcome` is the server's text (or what
    happened); `status` the HTTP status, None when the server was not reached."""

    def __init__(self, words: str, outcome: str, *, status: int | None = None) -> None:
        super().__init__(words)
        self.words = words
        self.outcome = outcome
        self.status = status

    @property
    def transient(self) -> bool:
        """No answer, a 5xx or a 429: the same request may succeed later (and may have been saved)."""
        return self.status is None or self.status >= 500 or self.status == 429


class FhirClient:
    """How to talk to one FHIR server: `base_url` (no trailing slash), authentication, retries, timeout.

    Give at most one of `bearer_token`, `oauth` and `tokens` (any TokenSource). `transport` replaces the
    network (tests).
    """

    def __init__(
        self,
        base_url: str,
        *,
        bearer_token: str | None = None,
        oauth: ClientCredentials | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        tokens: TokenSource | None = None,
    ) -> None:
        if sum(bool(way) for way in (bearer_token, oauth, tokens)) > 1:
            raise ValueError("choose a static bearer token, OAuth2 client credentials or a token source")
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self._bearer = bearer_token or None
        self._tokens: TokenSource | None = TokenCache(oauth, self.retry) if oauth else tokens
        self._transport = transport

    def __repr__(self) -> str:  # never the token
        return f"FhirClient({self.base_url!r})"

    def session(self, headers: RequestHeaders | None = None) -> FhirSession:
        """A connection pool for one piece of work (`async with client.session() as fhir: …`); `headers`
        are added to every request to the server."""
        return FhirSession(self, headers)

    async def token(self, http: httpx.AsyncClient, *, stale: str | None = None) -> str | None:
        """The bearer token to send, if any; with OAuth2 a cached or new one. Raises FhirFailure when the
        token endpoint refuses or cannot be reached."""
        if self._tokens is None:
            return self._bearer
        try:
            return await self._tokens.token(http, stale=stale)
        except TokenRefused as refused:
            raise FhirFailure(
                "The patient record system did not accept consultcam's sign-in",
                str(refused),
                status=401 if refused.status < 500 else refused.status,
            ) from None
        except TokenUnreachable as unreachable:
            raise FhirFailure(
                "The patient record system's sign-in service could not be reached",
                transport_words(unreachable.error),
            ) from None

    @property
    def refreshes_tokens(self) -> bool:
        """True with a token source (OAuth2): a 401 is answered by fetching a new token once."""
        return self._tokens is not None

    def resource_id(self, location: Any) -> str | None:
        """'Media/123/_history/1' or '[base]/Media/123/_history/1' → 'Media/123'; None when not one."""
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

    def new_http(self) -> httpx.AsyncClient:
        """An httpx client for one session with this server: the timeout, FHIR's Accept, no redirects."""
        return new_client(
            timeout=self.timeout,
            transport=self._transport,
            headers={"Accept": FHIR_JSON, "User-Agent": "consultcam"},
        )


class FhirSession:
    """Requests to one FHIR server over one connection pool, with the client's retries and authentication."""

    def __init__(self, client: FhirClient, headers: RequestHeaders | None) -> None:
        self.client = client
        self.base_url = client.base_url
        self._headers = headers
        self._http = client.new_http()

    async def __aenter__(self) -> FhirSession:
        await self._http.__aenter__()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._http.__aexit__(kind, error, traceback)

    async def send(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        repeatable: bool = False,
    ) -> httpx.Response:
        """One FHIR request with the kit's retries (5xx, 429, timeouts; a POST only when `repeatable`) and,
        with OAuth2, one token refresh on 401. The body is `json` (sent as FHIR JSON) or raw `content` (with
        the Content-Type in `headers`, e.g. a Binary's bytes: FHIR R4 binary.html#rest).

        Returns the final response (which may still be a 5xx or 429 after the last try); raises FhirFailure
        when the server, or its token endpoint, could not be reached or refused consultcam's sign-in.
        """
        try:
            attempted = await send_with_retries(
                lambda: self._authorised(method, url, json=json, content=content, headers=headers),
                self.client.retry,
                method=method,
                repeatable=repeatable,
                label=f"FHIR {method} {_path(url)}",
            )
        except Unreachable as unreachable:
            raise FhirFailure(
                "The patient record system could not be reached", transport_words(unreachable.error)
            ) from None
        return attempted.response

    async def read_capabilities(self) -> bool:
        """Whether the server's CapabilityStatement (GET [base]/metadata) lists the system interaction
        `transaction`. Raises FhirFailure when it does not answer one."""
        return (await self.read_capability_statement()).transaction

    async def read_capability_statement(self) -> Capabilities:
        """The server's CapabilityStatement (GET [base]/metadata, `rest` of mode server): the system
        interaction `transaction`, and each `resource.type` with the `create` interaction
        (hl7.org/fhir/R4/capabilitystatement.html). Raises FhirFailure when it does not answer one."""
        response = await self.send("GET", f"{self.base_url}/metadata")
        raise_for_status(response, "The patient record system did not describe itself")
        body = json_body(response)
        if not isinstance(body, dict) or body.get("resourceType") != "CapabilityStatement":
            raise FhirFailure(
                "The patient record system did not describe itself",
                "GET metadata did not return a CapabilityStatement",
                status=response.status_code,
            )
        transaction, creatable = False, set()
        for rest in body.get("rest") or []:
            if not isinstance(rest, dict) or rest.get("mode", "server") != "server":
                continue
            transaction = transaction or "transaction" in _codes(rest.get("interaction"))
            for resource in rest.get("resource") or []:
                if isinstance(resource, dict) and "create" in _codes(resource.get("interaction")):
                    creatable.add(str(resource.get("type")))
        return Capabilities(transaction, frozenset(creatable))

    async def _authorised(
        self, method: str, url: str, *, json: Any, content: bytes | None, headers: Mapping[str, str] | None
    ) -> httpx.Response:
        """One try: the request with the current token; with OAuth2, once more with a new token on 401."""
        token: str | None = None
        for refreshed in (False, True):
            token = await self.client.token(self._http, stale=token if refreshed else None)
            request_headers = dict(headers or {})
            if json is not None:
                request_headers["Content-Type"] = FHIR_JSON
            if self._headers is not None:
                request_headers |= self._headers()
            if token:
                request_headers["Authorization"] = f"Bearer {token}"
            response = await self._http.request(
                method, url, json=json, content=content, headers=request_headers
            )
            if response.status_code != 401 or not self.client.refreshes_tokens or refreshed:
                return response
            log.info("FHIR %s %s: 401, fetching a new access token once", method, _path(url))
        raise AssertionError("unreachable")  # pragma: no cover


# -- reading answers -------------------------------------------------------------------------------------


def raise_for_status(response: httpx.Response, refused: str) -> None:
    """FhirFailure unless 2xx: the OperationOutcome's words, and a sentence for the GP (`refused` for a 4xx
    other than 401, 403 and 429)."""
    status = response.status_code
    if 200 <= status < 300:
        return
    outcome = outcome_text(json_body(response)) or f"HTTP {status} {response.reason_phrase}".strip()
    if status in (401, 403):
        words = "The patient record system did not accept consultcam's sign-in"
    elif status == 429:
        words = "The patient record system is too busy right now"
    elif status >= 500:
        words = "The patient record system is having problems"
    else:
        words = refused
    raise FhirFailure(words, outcome, status=status)


def outcome_text(body: Any) -> str | None:
    """An OperationOutcome's issue[].diagnostics or details.text (or a coding's display), joined, at most
    500 characters; None when `body` is not an OperationOutcome or says nothing."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return None
    texts = []
    for issue in body.get("issue") or []:
        if not isinstance(issue, dict):
            continue
        details: dict[str, Any] = issue["details"] if isinstance(issue.get("details"), dict) else {}
        text = issue.get("diagnostics") or details.get("text")
        if not text:
            codings = details.get("coding") or []
            text = next((c.get("display") for c in codings if isinstance(c, dict) and c.get("display")), None)
        if isinstance(text, str) and text.strip():
            texts.append(" ".join(text.split()))
    return "; ".join(texts)[:500] or None


def json_body(response: httpx.Response) -> Any:
    """The response's JSON, or None when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def id_of(resource: Any) -> str | None:
    """ "<resourceType>/<id>" of a resource body, or None."""
    if isinstance(resource, dict) and resource.get("resourceType") and resource.get("id"):
        return f"{resource['resourceType']}/{resource['id']}"
    return None


def transport_words(error: httpx.TransportError | None) -> str:
    """What went wrong on the network, in words."""
    if isinstance(error, httpx.TimeoutException):
        return "it did not answer in time"
    if isinstance(error, httpx.ConnectError):
        return "the connection was refused or the server was not found"
    return f"the connection failed ({type(error).__name__})"


def _codes(interactions: Any) -> set[str]:
    """The `code`s of a CapabilityStatement's interaction list."""
    return {str(i.get("code")) for i in interactions or [] if isinstance(i, dict)}


def _path(url: str) -> str:
    """The URL's path only, for logs (no query)."""
    return urlsplit(url).path or "/"
