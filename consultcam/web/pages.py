"""Server-rendered pages: the desktop (`/`, `/sessions/{id}`), the phone (`/m/{token}`), sign-in and
sign-out.

Pages carry no patient data in the HTML: their scripts fetch it through the API, with the same
authorisation as every other call. The QR URL's token is only handed to the page's script, which
redeems it with `POST /api/pair` (a link previewer fetching the URL redeems nothing).

Sign-in (`/login`, rate limited per client) starts a server-side sign-in (`consultcam.auth.signin`) whose
opaque id is the browser's cookie; `POST /logout` ends it on the server, so a copy of the cookie dies too.
With CONSULTCAM_OIDC_CLIENT_ID set, a page visited without a sign-in sends the browser to the identity
provider instead (`redirect_to_provider`; the callback is `consultcam.auth.endpoints`), and `/logout` then
also sends it to the provider's end-session endpoint when there is one (RP-Initiated Logout 1.0).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from consultcam.auth import oidc_signin, signin
from consultcam.auth.oidc_login import OIDCLogin, ProviderUnavailable
from consultcam.auth.principals import CLINICIAN_COOKIE, EMBEDDED_CLINICIAN, Clinician, is_clinician_token
from consultcam.config import WARN_IMAGES
from consultcam.db import UnitOfWork
from consultcam.deps import RuntimeDep, authenticate_clinician, oidc_login
from consultcam.errors import NotAuthenticated
from consultcam.ratelimit import TooManyRequests, client_address, limiter
from consultcam.runtime import Runtime

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")

#: The query-string launch's pre-fill (embedded mode only: off with OIDC or SMART, DESIGN.md).
LAUNCH_PARAMS = (
    "encounterId",
    "patientId",
    "patientName",
    "nhi",
    "birthDate",
    "practitionerId",
    "facilityId",
)


def _safe_next(value: str | None) -> str:
    """Only same-site paths (no scheme, no host, no `//`) may be redirected to after sign-in."""
    if not value or not value.startswith("/") or value.startswith("//") or urlsplit(value).netloc:
        return "/"
    return value


def _signin_page(
    request: Request,
    rt: Runtime,
    next_path: str,
    error: str | None,
    status_code: int,
    headers: dict[str, str] | None = None,
) -> Response:
    """The sign-in page, saying how long a sign-in lasts (CONSULTCAM_SIGNIN_IDLE_MINUTES, _MAX_HOURS)."""
    context = {
        "next": next_path,
        "error": error,
        "idle_minutes": rt.settings.signin_idle_minutes,
        "max_hours": rt.settings.signin_max_hours,
    }
    return templates.TemplateResponse(
        request, "signin.html", context, status_code=status_code, headers=headers
    )


async def _desktop(
    request: Request, rt: RuntimeDep, background: BackgroundTasks, session_id: str | None
) -> Response:
    # An OIDC bearer (added by the practice's sign-in proxy), or a sign-in cookie that still counts.
    clinician = await authenticate_clinician(request, rt, background=background)
    if clinician is None:
        next_path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        login = oidc_login(request, rt)
        if login is None:
            return _signin_page(request, rt, next_path, None, 401)
        if _wants_json(request):  # a script, not a person: no redirect to follow
            raise NotAuthenticated("Sign in first: open consultcam in the browser to sign in.")
        return await redirect_to_provider(request, rt, login, next_path)
    embedded = not (rt.settings.oidc_enabled or rt.settings.smart_issuers)
    launch = {
        key: request.query_params[key] for key in LAUNCH_PARAMS if embedded and request.query_params.get(key)
    }
    config = {
        "maxImages": rt.settings.max_images,
        "warnImages": WARN_IMAGES,
        "pairingTtlSeconds": rt.settings.pairing_ttl_seconds,
    }
    # Who is signed in, in the app bar; a launched (bound) GP starts the next session from the record system.
    context = {
        "session_id": session_id,
        "launch": launch,
        "config": config,
        "signed_in_as": clinician.name,
        "launched": clinician.bound,
    }
    return templates.TemplateResponse(request, "desktop.html", context)


def public_base(request: Request, rt: Runtime) -> str:
    """CONSULTCAM_PUBLIC_URL, else this request's own origin: what the identity provider redirects to."""
    return (rt.settings.public_url or str(request.base_url)).rstrip("/")


def problem_page(request: Request, problem: oidc_signin.SignInProblem, next_path: str = "/") -> Response:
    """The page for a sign-in that failed: what happened (`problem`'s words), its status, and a link to
    try again (`/auth/login?next=`)."""
    context = {"problem": problem, "reason": problem.reason, "next": _safe_next(next_path)}
    headers = {"Retry-After": "30"} if problem.status == 503 else None
    return templates.TemplateResponse(
        request, "signin_problem.html", context, status_code=problem.status, headers=headers
    )


async def redirect_to_provider(request: Request, rt: Runtime, login: OIDCLogin, next_path: str) -> Response:
    """Send this browser to the identity provider to sign in, coming back to the same-site `next_path`
    (`consultcam.auth.oidc_signin.begin`); 503 page when the provider cannot be reached."""
    browser = request.cookies.get(oidc_signin.BROWSER_COOKIE) or oidc_signin.new_browser_value()
    try:
        url = await oidc_signin.begin(
            rt, login, public_base(request, rt) + "/auth/callback", _safe_next(next_path), browser
        )
    except ProviderUnavailable as exc:
        status = 503 if exc.reason == "unreachable" else 502
        return problem_page(request, oidc_signin.SignInProblem(exc.reason, status, str(exc)), next_path)
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        oidc_signin.BROWSER_COOKIE,
        browser,
        max_age=3600,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/auth/",
    )
    return response


@router.get("/", response_class=HTMLResponse)
async def desktop_home(request: Request, rt: RuntimeDep, background: BackgroundTasks) -> Response:
    """The desktop: start a capture session (form, or EMR launch parameters in the query)."""
    return await _desktop(request, rt, background, None)


@router.get("/sessions/{session_id}", response_class=HTMLResponse)
async def desktop_session(
    session_id: str, request: Request, rt: RuntimeDep, background: BackgroundTasks
) -> Response:
    """The desktop for one capture session: QR code, live gallery, commit."""
    return await _desktop(request, rt, background, session_id)


@router.get("/m/{token}", response_class=HTMLResponse)
async def phone(token: str, request: Request, rt: RuntimeDep) -> Response:
    """The phone page opened from the QR code."""
    config = {"maxImages": rt.settings.max_images, "warnImages": WARN_IMAGES}
    return templates.TemplateResponse(request, "mobile.html", {"token": token, "config": config})


def _wants_json(request: Request) -> bool:
    """The page's script (api.js asks for JSON) rather than a plain form or link."""
    return "application/json" in request.headers.get("accept", "")


async def _over_login_limit(request: Request, rt: Runtime, next_path: str) -> Response | None:
    """Count a sign-in attempt (CONSULTCAM_RATE_LIMIT_LOGIN). Over the limit a browser gets the sign-in
    page saying how long to wait (429 with Retry-After); anything else the JSON error (TooManyRequests)."""
    try:
        await limiter(request).hit("login", client_address(request))
    except TooManyRequests as exc:
        if "text/html" not in request.headers.get("accept", ""):
            raise
        return _signin_page(request, rt, next_path, exc.detail, 429, exc.headers)
    return None


async def _signed_in(request: Request, rt: Runtime, token: str, next_path: str) -> Response:
    """Check the clinician token, then `begin_signin`: the redirect also takes the token out of the address
    bar and the history. Every attempt counts against the rate limit first, right or wrong."""
    refused = await _over_login_limit(request, rt, next_path)
    if refused is not None:
        return refused
    if not signin.embedded_token_accepted(rt.settings):
        return _signin_page(
            request,
            rt,
            next_path,
            "This server signs clinicians in through the practice's identity provider; the clinician "
            "token is not accepted here.",
            403,
        )
    if not is_clinician_token(token, rt.settings.clinician_token):
        return _signin_page(
            request,
            rt,
            next_path,
            "That clinician token is not right. Copy it again from the consultcam console.",
            401,
        )
    return await begin_signin(request, rt, EMBEDDED_CLINICIAN, "embedded", next_path)


async def begin_signin(
    request: Request,
    rt: Runtime,
    clinician: Clinician,
    method: signin.Method,
    next_path: str,
    *,
    uow: UnitOfWork | None = None,
    sealed_id_token: str | None = None,
) -> Response:
    """Sign this browser in as `clinician`, who has just proven who they are by `method`: a new server-side
    sign-in (the browser's previous one ends: a sign-in is never handed on, against session fixation), its
    cookie (HttpOnly, SameSite=Lax, Secure over HTTPS, Max-Age CONSULTCAM_SIGNIN_MAX_HOURS), and a 303 to
    the same-site `next_path`. The one way in for every method: the login link and form here, a Medtech
    launch (`consultcam.launch.endpoints`), an OIDC callback (issue 13).

    `uow`: start the sign-in in the caller's transaction (a launch commits its session and its used
    context with it); the caller commits before returning the response. Else in a transaction of its own.
    `sealed_id_token`: an OIDC sign-in's ID Token (sealed), kept for logout's id_token_hint.
    """
    previous = request.cookies.get(CLINICIAN_COOKIE)
    user_agent = request.headers.get("user-agent", "")

    async def _start(work: UnitOfWork) -> str:
        if previous:
            await signin.end(work, rt, previous, "replaced")
        cookie, _ = await signin.start(
            work, rt.settings, clinician, method, user_agent=user_agent, sealed_id_token=sealed_id_token
        )
        return cookie

    if uow is None:
        async with rt.unit_of_work() as own:
            cookie = await _start(own)
    else:
        cookie = await _start(uow)
    response = RedirectResponse(_safe_next(next_path), status_code=303)
    response.set_cookie(
        CLINICIAN_COOKIE,
        cookie,
        max_age=int(signin.max_age(rt.settings).total_seconds()),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.get("/login")
async def login_link(request: Request, rt: RuntimeDep, token: str = "", next: str = "/") -> Response:
    """The login URL printed at start-up (like Jupyter's): signs this browser in, then redirects so the
    token leaves the address bar and the history."""
    return await _signed_in(request, rt, token, next)


@router.post("/login")
async def login_form(
    request: Request, rt: RuntimeDep, token: str = Form(""), next: str = Form("/")
) -> Response:
    """The sign-in form: paste the clinician token."""
    return await _signed_in(request, rt, token.strip(), next)


@router.post("/logout")
async def logout(request: Request, rt: RuntimeDep) -> Response:
    """Sign this browser out: its sign-in ends on the server at once (the cookie, even copied elsewhere,
    no longer signs anything in) and the cookie is deleted. Nothing to end is not an error.

    After an OIDC sign-in, when the provider offers RP-Initiated Logout, the browser goes on to its
    end-session endpoint (id_token_hint, post_logout_redirect_uri {PUBLIC_URL}/): the page's script
    (Accept: application/json) gets 200 `{"redirect": url}` and navigates there, a plain form a 303 there.
    Otherwise 204 for the script, a 303 to `/` for the form."""
    cookie = request.cookies.get(CLINICIAN_COOKIE)
    sealed = None
    if cookie:
        async with rt.unit_of_work() as uow:
            sealed = await signin.sealed_id_token(uow, cookie)
            await signin.end(uow, rt, cookie, "signed-out")
    redirect = None
    login = oidc_login(request, rt)
    if login is not None and sealed is not None:
        redirect = await oidc_signin.end_session_url(rt, login, sealed, public_base(request, rt) + "/")
    response: Response
    if _wants_json(request):
        response = Response(status_code=204) if redirect is None else JSONResponse({"redirect": redirect})
    else:
        response = RedirectResponse(redirect or "/", status_code=303)
    response.delete_cookie(
        CLINICIAN_COOKIE, path="/", httponly=True, samesite="lax", secure=request.url.scheme == "https"
    )
    return response
