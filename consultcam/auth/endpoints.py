"""The identity provider's side of the browser sign-in (issue 13): `GET /auth/login` begins one on
purpose (the "Sign in again" links), `GET /auth/callback` is the redirect URI registered with the provider
({PUBLIC_URL}/auth/callback). The rules are `consultcam.auth.oidc_signin`; pages visited without a
sign-in begin one themselves (`consultcam.web.pages.redirect_to_provider`).

The callback answers with a page, never JSON: a 303 to the page the clinician was on, signed in
(`consultcam.web.pages.begin_signin`, method "oidc"), or a page saying in plain words why not
(`signin_problem.html`): 400 a changed or unknown state, an expired request, a request begun in another
browser, a refused code, an answer from another issuer (RFC 9207); 409 a callback used already; 403 the
provider's `access_denied`; 401 an ID Token that does not verify (signature, issuer, audience, expiry,
nonce); 502/503 the provider answering nonsense or not at all. Both are 404 when
CONSULTCAM_OIDC_CLIENT_ID is not set.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response

from consultcam.auth import oidc_signin
from consultcam.deps import RuntimeDep, oidc_login
from consultcam.errors import ResourceNotFound
from consultcam.web.pages import begin_signin, problem_page, redirect_to_provider

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)


def _not_configured() -> ResourceNotFound:
    return ResourceNotFound(
        "This server does not sign clinicians in through an identity provider (CONSULTCAM_OIDC_CLIENT_ID "
        "is not set).",
        error="NotFound",
    )


@router.get("/auth/login")
async def auth_login(request: Request, rt: RuntimeDep, next: str = "/") -> Response:
    """Go to the identity provider to sign in, then back to the same-site path `next`."""
    login = oidc_login(request, rt)
    if login is None:
        raise _not_configured()
    return await redirect_to_provider(request, rt, login, next)


@router.get("/auth/callback")
async def auth_callback(request: Request, rt: RuntimeDep) -> Response:
    """The identity provider's answer (`state` with `code`, or `error`; `iss`): sign this browser in and go
    back to where the clinician was, or say why not."""
    login = oidc_login(request, rt)
    if login is None:
        raise _not_configured()
    params = {
        key: request.query_params[key]
        for key in ("state", "code", "error", "iss")
        if key in request.query_params
    }
    try:
        done = await oidc_signin.complete(rt, login, params, request.cookies.get(oidc_signin.BROWSER_COOKIE))
    except oidc_signin.SignInProblem as exc:
        log.info("OIDC sign-in not completed: %s", exc.reason)
        return problem_page(request, exc)
    log.info("OIDC sign-in completed for %s", done.clinician.id)
    return await begin_signin(
        request, rt, done.clinician, "oidc", done.next_path, sealed_id_token=done.sealed_id_token
    )
