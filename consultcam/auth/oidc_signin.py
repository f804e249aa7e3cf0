"""Signing a clinician's browser in through the practice's identity provider (issue 13; DESIGN.md, "Launch
and sign-in"): the rules around the protocol of `consultcam.auth.oidc_login`. No web framework: the pages
(`consultcam.web.pages`) and `consultcam.auth.endpoints` call it.

1. `begin`: a page visited without a sign-in. A fresh `state`, `nonce` and PKCE `code_verifier` (each 256
   bits from `secrets`); the request is recorded with them and the return path sealed
   (`consultcam.auth.authorization_requests`, purpose "oidc", 10 minutes), and tied to this browser: the
   SHA-256 of a random value the browser keeps in a cookie (`BROWSER_COOKIE`), so a callback link made
   for someone else's sign-in cannot sign this browser in (login CSRF, RFC 6749 §10.12).
2. `complete`: the callback. The state is used once (a replayed callback is refused), the browser must be
   the one that began, the provider's `error` is reported as such, the `iss` response parameter, when
   sent, must be the issuer (RFC 9207 §2.4, against mix-up), then the code is exchanged and the ID Token
   verified (`oidc_login`). Result: the `Clinician` ("oidc:<claim>", name, fhirUser) and the ID Token
   sealed for logout; the caller starts the server-side sign-in (method "oidc").
3. `end_session_url`: where `/logout` sends the browser after ending the sign-in here (RP-Initiated
   Logout 1.0), when the provider offers it.

Every refusal is a `SignInProblem` with a stable `reason`, an HTTP `status` and plain words; none carries
a token, code or state.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from consultcam.auth import authorization_requests
from consultcam.auth.oidc_login import Identity, LoginRefused, OIDCLogin, ProviderUnavailable
from consultcam.auth.principals import Clinician
from consultcam.kit.sealing import SealBroken, seal, unseal
from consultcam.runtime import Runtime

log = logging.getLogger(__name__)

#: The cookie tying a pending sign-in to the browser that began it (HttpOnly, SameSite=Lax, /auth/ only).
BROWSER_COOKIE = "consultcam_signin_request"
_ID_TOKEN_PURPOSE = "oidc-id-token"  # noqa: S105 (a sealing purpose, not a secret)


class SignInProblem(Exception):
    """The callback cannot sign anyone in: `reason` (a stable code for logs and tests), `status` (the
    HTTP status of the page that says so) and the message, in plain words."""

    def __init__(self, reason: str, status: int, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class Completed:
    """A finished sign-in: the `clinician`, their ID Token `sealed_id_token` (for logout) and the same-site
    `next_path` they were on."""

    clinician: Clinician
    sealed_id_token: str
    next_path: str


def new_browser_value() -> str:
    """A fresh value for `BROWSER_COOKIE` (256 bits)."""
    return secrets.token_urlsafe(32)


def _browser_hash(value: str) -> str:
    return hashlib.sha256(f"consultcam:oidc-browser\0{value}".encode()).hexdigest()


async def begin(rt: Runtime, login: OIDCLogin, redirect_uri: str, next_path: str, browser: str) -> str:
    """Record a new authorization request for the browser holding `browser` (its BROWSER_COOKIE value),
    returning the provider's authorization URL. Raises ProviderUnavailable (nothing recorded then)."""
    state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
    url = await login.authorization_url(redirect_uri, state=state, nonce=nonce, code_verifier=verifier)
    kept = {
        "code_verifier": verifier,
        "nonce": nonce,
        "next": next_path,
        "redirect_uri": redirect_uri,
        "browser": _browser_hash(browser),
    }
    async with rt.unit_of_work() as uow:
        await authorization_requests.add(
            uow.session, rt.settings.secret_key, "oidc", state, login.issuer, kept
        )
    return url


_STATE_REFUSED = {
    "unknown": SignInProblem(
        "unknown-state",
        400,
        "This sign-in answer does not belong to a sign-in that consultcam started: the link was changed, "
        "or it is from another server.",
    ),
    "used": SignInProblem(
        "replayed",
        409,
        "This sign-in answer has been used already. A sign-in link works once; if you went back in the "
        "browser or reloaded the page, just sign in again.",
    ),
    "expired": SignInProblem(
        "expired-state",
        400,
        "This sign-in took longer than 10 minutes at the identity provider, so it was abandoned.",
    ),
}


async def complete(
    rt: Runtime, login: OIDCLogin, params: Mapping[str, str], browser: str | None
) -> Completed:
    """The callback's query `params` (`state`, `code`, or `error`; `iss`) from the browser holding
    `browser`: the signed-in identity, or SignInProblem. The state is spent (committed) before the
    provider is asked anything, so it never works twice."""
    state = params.get("state", "")
    if not state or len(state) > 200:
        raise SignInProblem("no-state", 400, "This sign-in answer carries no sign-in request (no state).")
    async with rt.unit_of_work() as uow:
        claimed = await authorization_requests.claim(uow.session, rt.settings.secret_key, "oidc", state)
    if isinstance(claimed, str):
        raise _STATE_REFUSED[claimed]
    kept = claimed.secrets
    if not browser or _browser_hash(browser) != kept.get("browser"):
        raise SignInProblem(
            "other-browser",
            400,
            "This sign-in answer is for a sign-in started in another browser (or its cookies were cleared), "
            "so it cannot sign this one in.",
        )
    error = params.get("error")
    if error:
        _provider_error(error)
    issuer = params.get("iss")
    if issuer is not None and issuer != claimed.issuer:
        raise SignInProblem(
            "issuer-mismatch",
            400,
            "The sign-in answer came from another identity provider than the one consultcam sent you to.",
        )
    code = params.get("code", "")
    if not code:
        raise SignInProblem("no-code", 400, "The identity provider's answer carries no authorization code.")
    try:
        identity = await login.exchange(
            str(kept["redirect_uri"]),
            code=code,
            code_verifier=str(kept["code_verifier"]),
            nonce=str(kept["nonce"]),
        )
    except LoginRefused as exc:
        log.warning("OIDC sign-in refused: %s", exc.reason)
        raise SignInProblem(exc.reason, 401 if exc.reason != "token-refused" else 400, str(exc)) from None
    except ProviderUnavailable as exc:
        log.warning("OIDC sign-in: provider unavailable (%s)", exc.reason)
        raise SignInProblem(exc.reason, 503 if exc.reason == "unreachable" else 502, str(exc)) from None
    return Completed(
        clinician=clinician_of(identity),
        sealed_id_token=seal(rt.settings.secret_key, _ID_TOKEN_PURPOSE, {"id_token": identity.id_token}),
        next_path=str(kept.get("next") or "/"),
    )


def _provider_error(error: str) -> None:
    """Raise the SignInProblem for an error response (RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6)."""
    if error == "access_denied":
        raise SignInProblem(
            "access-denied",
            403,
            "The identity provider did not let you sign in to consultcam (you declined, or your account "
            "may not use consultcam).",
        )
    if error in ("temporarily_unavailable", "server_error"):
        raise SignInProblem("provider-error", 503, "The identity provider could not sign you in just now.")
    safe = "".join(c for c in error[:60] if c.isalnum() or c in "_-")
    raise SignInProblem("provider-error", 400, f"The identity provider refused the sign-in ({safe}).")


def clinician_of(identity: Identity) -> Clinician:
    """The clinician an OIDC identity is: id "oidc:<claim>" (as for a bearer token, `consultcam.auth.oidc`),
    their name, and their fhirUser."""
    return Clinician(id=f"oidc:{identity.subject}", name=identity.name, fhir_user=identity.fhir_user)


async def end_session_url(
    rt: Runtime, login: OIDCLogin, sealed_id_token: str | None, post_logout_redirect_uri: str
) -> str | None:
    """The provider's end-session URL for a sign-in that kept `sealed_id_token` (None: no id_token_hint),
    or None when the provider offers no RP-Initiated Logout."""
    id_token = None
    if sealed_id_token:
        try:
            id_token = str(unseal(rt.settings.secret_key, _ID_TOKEN_PURPOSE, sealed_id_token)["id_token"])
        except (SealBroken, KeyError):
            id_token = None
    return await login.end_session_url(id_token, post_logout_redirect_uri)
