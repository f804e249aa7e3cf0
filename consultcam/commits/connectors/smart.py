"""The commit of a session opened by a SMART App Launch (issue 13): into the launching EHR, with the launch's
access token, by the `fhir` connector's rules (transaction where the CapabilityStatement lists it, else
conditional creates with compensation; Media, or DocumentReference where the EHR does not list Media as
creatable).

Tokens: the grant's access token while it is valid (30 s of margin before `access_expires_at`); when it has
expired, or the EHR answers 401, a new one from the refresh token (RFC 6749 §6) at the grant's token
endpoint, authenticating as the launch did: HTTP Basic with CONSULTCAM_SMART_CLIENT_SECRET when set (a
confidential client, §2.3.1), else the client id in the form (a public client, §3.2.1). The new tokens go to
`on_refresh` (the service seals them into the grant) before they are used. With no refresh token, or one
the EHR refuses, the commit fails before writing anything with `LaunchExpired`. Tokens are never logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import httpx

from consultcam.commits.connectors.base import (
    CommitContext,
    CommitFailed,
    CommitItem,
    GrantAccess,
    ImageResult,
    LaunchExpired,
    ProgressCallback,
    TokensRefreshed,
    all_failed,
)
from consultcam.commits.connectors.fhir import FHIR_RETRY, FhirConnector
from consultcam.kit.http import RetryPolicy, Unreachable, send_with_retries
from consultcam.kit.oauth2 import TokenRefused, TokenUnreachable, client_auth

__all__ = ["LAUNCH_EXPIRED", "SmartConnector", "SmartTokens"]

log = logging.getLogger(__name__)

#: What the GP reads when the EHR's sign-in cannot be renewed.
LAUNCH_EXPIRED = (
    "The EHR's sign-in for this session has expired. Launch consultcam again from the EHR for this "
    "patient; your photos are kept."
)
#: A photo's result in that case.
NOT_SENT = "not sent: the EHR's sign-in for this session has expired"

#: Refresh this long before the EHR's stated expiry, so a token does not lapse between check and use.
MARGIN = timedelta(seconds=30)


class SmartTokens:
    """The bearer tokens of one SMART grant, as a `fhir_client.TokenSource`.

    `token(http)` is the access token while valid, else a refreshed one; `token(http, stale=t)` refreshes
    unless `t` was already replaced. Raises TokenRefused (status 401) when the grant cannot be renewed (then
    `expired` is True and every later call raises at once), TokenRefused with a 5xx or TokenUnreachable
    when the token endpoint is failing. `client_secret` None: a public client.
    """

    def __init__(
        self,
        grant: GrantAccess,
        on_refresh: TokensRefreshed,
        *,
        client_secret: str | None = None,
        retry: RetryPolicy = FHIR_RETRY,
    ) -> None:
        self.token_endpoint = grant.token_endpoint
        self.client_id = grant.client_id
        self._secret = client_secret or None
        self._access = grant.access_token
        self._refresh = grant.refresh_token or None
        self._expires = grant.access_expires_at
        self._on_refresh = on_refresh
        self._retry = retry
        self._lock = asyncio.Lock()
        self.expired = False
        self.refreshes = 0

    def __repr__(self) -> str:  # never a token nor the secret
        return f"SmartTokens(token_endpoint={self.token_endpoint!r}, client_id={self.client_id!r})"

    async def token(self, client: httpx.AsyncClient, *, stale: str | None = None) -> str:
        """A valid access token (see the class docstring)."""
        async with self._lock:
            if self.expired:
                raise TokenRefused(401, "invalid_grant")
            lapsed = self._expires is not None and datetime.now(UTC) >= self._expires - MARGIN
            if lapsed or (stale is not None and stale == self._access):
                await self._renew(client)
            return self._access

    async def _renew(self, client: httpx.AsyncClient) -> None:
        """POST grant_type=refresh_token (RFC 6749 §6), keep the answer, hand it to `on_refresh`."""
        if self._refresh is None:
            self.expired = True
            raise TokenRefused(401, "no refresh token was granted")
        form = {"grant_type": "refresh_token", "refresh_token": self._refresh}
        headers = {"Accept": "application/json"}
        extra_form, extra_headers = client_auth(self.client_id, self._secret)
        form |= extra_form
        headers |= extra_headers
        try:
            attempted = await send_with_retries(
                lambda: client.post(self.token_endpoint, data=form, headers=headers),
                self._retry,
                method="POST",
                repeatable=True,
                label="SMART token refresh",
            )
        except Unreachable as unreachable:
            raise TokenUnreachable(unreachable.error) from None
        response = attempted.response
        try:
            body = response.json()
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else {}
        access = body.get("access_token")
        if response.status_code != 200 or not isinstance(access, str) or not access:
            error = body.get("error") if isinstance(body.get("error"), str) else None
            if response.status_code < 500:
                self.expired = True  # §5.2: invalid_grant and the like; asking again will not help
            log.warning("SMART token refresh refused: HTTP %s %s", response.status_code, error or "")
            raise TokenRefused(response.status_code if response.status_code >= 400 else 401, error)
        refresh = body.get("refresh_token")
        expires_in = body.get("expires_in")
        self._access = access
        if isinstance(refresh, str) and refresh:
            self._refresh = refresh  # §6: a new refresh token replaces the old one
        self._expires = (
            datetime.now(UTC) + timedelta(seconds=float(expires_in))
            if isinstance(expires_in, int | float) and expires_in > 0
            else None
        )
        self.refreshes += 1
        log.info("SMART access token refreshed for client %s", self.client_id)
        await self._on_refresh(self._access, self._refresh, self._expires)


class SmartConnector:
    """The `Connector` for one session opened by a SMART launch: a FhirConnector on the grant's FHIR base,
    the resource chosen by the EHR's CapabilityStatement, authenticated by `SmartTokens`. A commit that
    failed because the grant could not be renewed raises LaunchExpired instead of CommitFailed.

    Built per commit (`registry.connector_for_grant`); its HTTP connections live only while `commit` or
    `check` runs.
    """

    name = "smart"

    def __init__(
        self,
        grant: GrantAccess,
        on_refresh: TokensRefreshed,
        *,
        client_secret: str | None = None,
        retry: RetryPolicy = FHIR_RETRY,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.tokens = SmartTokens(grant, on_refresh, client_secret=client_secret, retry=retry)
        self.fhir = FhirConnector(
            grant.fhir_base,
            tokens=self.tokens,
            choose_resource=True,
            retry=retry,
            timeout=timeout,
            transport=transport,
        )

    def __repr__(self) -> str:  # never a token
        return f"SmartConnector({self.fhir.base_url!r})"

    async def commit(
        self, context: CommitContext, items: Sequence[CommitItem], progress: ProgressCallback
    ) -> list[ImageResult]:
        """FhirConnector.commit into the EHR; raises LaunchExpired when its sign-in could not be renewed
        (nothing written, or, when the EHR revoked it mid-commit, what could not be removed named),
        CommitFailed for anything else."""
        try:
            return await self.fhir.commit(context, items, progress)
        except CommitFailed as failed:
            if not self.tokens.expired:
                raise
            detail = LAUNCH_EXPIRED
            if "could not be removed" in failed.detail:  # revoked mid-commit, and the clean-up was refused
                detail += " " + failed.detail
            raise LaunchExpired(detail, all_failed(items, NOT_SENT)) from None

    async def check(self) -> None:
        """Readiness of the EHR (its CapabilityStatement, with the grant's token)."""
        await self.fhir.check()
