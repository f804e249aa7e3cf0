"""The OAuth 2.0 client credentials grant (RFC 6749 §4.4) with a token cache: fetch a token, keep it until
shortly before it expires, fetch one at a time however many requests need it, and fetch again when the
resource server says (401) that the one it was given is no longer good.

The client secret and the tokens are never logged nor shown in a repr.
"""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from consultcam.kit.http import RetryPolicy, Unreachable, send_with_retries

__all__ = ["ClientCredentials", "TokenCache", "TokenRefused", "TokenUnreachable", "client_auth"]

#: Lifetime assumed when the token endpoint does not say (`expires_in` is only RECOMMENDED, RFC 6749 §5.1).
DEFAULT_LIFETIME_SECONDS = 300.0


@dataclass(frozen=True)
class ClientCredentials:
    """A client registration for the client credentials grant (RFC 6749 §4.4).

    `client_auth` "basic" sends the client id and secret with HTTP Basic (§2.3.1, the default every server
    must support); "post" sends them in the form body (client_secret_post). The secret is left out of repr.
    """

    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    scope: str | None = None
    client_auth: str = "basic"


class TokenRefused(Exception):
    """The token endpoint answered, but with no token: `status` is its HTTP status, `error` the OAuth2
    error code it gave (RFC 6749 §5.2, e.g. "invalid_client"), when it gave one."""

    def __init__(self, status: int, error: str | None) -> None:
        super().__init__(f"token request answered HTTP {status}" + (f" ({error})" if error else ""))
        self.status = status
        self.error = error


class TokenUnreachable(Exception):
    """The token endpoint could not be reached on any try; `error` is the last transport error."""

    def __init__(self, error: httpx.TransportError) -> None:
        super().__init__(type(error).__name__)
        self.error = error


class TokenCache:
    """Access tokens for one client registration, cached until shortly before they expire.

    `token(client)` returns the cached token, or fetches one; concurrent callers share one fetch. After a
    401 with a token, `token(client, stale=that_token)` fetches a new one unless another caller already has.
    The margin before expiry is a tenth of the lifetime, at most 60 s.
    """

    def __init__(self, credentials: ClientCredentials, retry: RetryPolicy | None = None) -> None:
        self.credentials = credentials
        self._retry = retry or RetryPolicy()
        self._token: str | None = None
        self._expires = 0.0  # time.monotonic()
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:  # never the token nor the secret
        return (
            f"TokenCache(token_url={self.credentials.token_url!r}, client_id={self.credentials.client_id!r})"
        )

    async def token(self, client: httpx.AsyncClient, *, stale: str | None = None) -> str:
        """A valid access token, fetched with `client` when there is none, it is about to expire, or it is
        `stale` (refused by the resource server). Raises TokenRefused or TokenUnreachable."""
        async with self._lock:
            if self._token is None or self._token == stale or time.monotonic() >= self._expires:
                self._token, self._expires = await self._fetch(client)
            return self._token

    async def _fetch(self, client: httpx.AsyncClient) -> tuple[str, float]:
        """POST the grant (RFC 6749 §4.4.2); (token, monotonic expiry with the margin taken off)."""
        oauth = self.credentials
        form = {"grant_type": "client_credentials"}
        if oauth.scope:
            form["scope"] = oauth.scope
        headers = {"Accept": "application/json"}
        if oauth.client_auth == "post":
            form |= {"client_id": oauth.client_id, "client_secret": oauth.client_secret}
        else:
            headers |= client_auth(oauth.client_id, oauth.client_secret)[1]
        try:
            # A token request changes nothing on the server: safe to repeat.
            attempted = await send_with_retries(
                lambda: client.post(oauth.token_url, data=form, headers=headers),
                self._retry,
                method="POST",
                repeatable=True,
                label="OAuth2 token request",
            )
        except Unreachable as unreachable:
            raise TokenUnreachable(unreachable.error) from None
        response = attempted.response
        body = _json(response)
        token = body.get("access_token") if isinstance(body, dict) else None
        if response.status_code != 200 or not isinstance(token, str) or not token:
            error = body.get("error") if isinstance(body, dict) else None
            raise TokenRefused(response.status_code, error if isinstance(error, str) else None)
        expires_in = body.get("expires_in") if isinstance(body, dict) else None
        lifetime = (
            float(expires_in)
            if isinstance(expires_in, int | float) and expires_in > 0
            else DEFAULT_LIFETIME_SECONDS
        )
        margin = min(60.0, lifetime / 10)
        return token, time.monotonic() + lifetime - margin


def client_auth(client_id: str, secret: str | None) -> tuple[dict[str, str], dict[str, str]]:
    """How a client proves itself at a token endpoint, as (form fields, headers) to add to the request:
    with a secret, HTTP Basic over the form-urlencoded id and secret (RFC 6749 §2.3.1, the method every
    server must support); without one (a public client, §2.1), `client_id` in the form (§3.2.1)."""
    if secret is None:
        return {"client_id": client_id}, {}
    pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
    return {}, {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode("ascii")}


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
