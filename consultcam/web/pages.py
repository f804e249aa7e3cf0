"""Server-rendered pages: the desktop (`/`, `/sessions/{id}`), the phone (`/m/{token}`), sign-in and
sign-out.

Pages carry no patient data in the HTML: their scripts fetch it through the API, with the same
authorisation as every other call. The QR URL's token is only handed to the page's script, which
redeems it with `POST /api/pair` (a link previewer fetching the URL redeems nothing).

Sign-in (`/login`, rate limited per client) starts a server-side sign-in (`consultcam.auth.signin`) whose
opaque id is the browser's cookie; `POST /logout` ends it on the server, so a copy of the cookie dies too.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from consultcam.auth import signin
from consultcam.auth.principals import CLINICIAN_COOKIE, EMBEDDED_CLINICIAN, Clinician, is_clinician_token
from consultcam.config import WARN_IMAGES
from consultcam.db import UnitOfWork
from consultcam.deps import RuntimeDep, authenticate_clinician
from consultcam.ratelimit import TooManyRequests, client_address, limiter
from consultcam.runtime import Runtime

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")

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
    if await authenticate_clinician(request, rt, background=background) is None:
        next_path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return _signin_page(request, rt, next_path, None, 401)
    launch = {key: request.query_params[key] for key in LAUNCH_PARAMS if request.query_params.get(key)}
    config = {
        "maxImages": rt.settings.max_images,
        "warnImages": WARN_IMAGES,
        "pairingTtlSeconds": rt.settings.pairing_ttl_seconds,
    }
    return templates.TemplateResponse(
        request, "desktop.html", {"session_id": session_id, "launch": launch, "config": config}
    )


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
) -> Response:
    """Sign this browser in as `clinician`, who has just proven who they are by `method`: a new server-side
    sign-in (the browser's previous one ends: a sign-in is never handed on, against session fixation), its
    cookie (HttpOnly, SameSite=Lax, Secure over HTTPS, Max-Age CONSULTCAM_SIGNIN_MAX_HOURS), and a 303 to
    the same-site `next_path`. The one way in for every method: the login link and form here, a Medtech
    launch (`consultcam.launch.endpoints`), an OIDC callback (issue 13).

    `uow`: start the sign-in in the caller's transaction (a launch commits its session and its used
    context with it); the caller commits before returning the response. Else in a transaction of its own.
    """
    previous = request.cookies.get(CLINICIAN_COOKIE)
    user_agent = request.headers.get("user-agent", "")

    async def _start(work: UnitOfWork) -> str:
        if previous:
            await signin.end(work, rt, previous, "replaced")
        cookie, _ = await signin.start(work, rt.settings, clinician, method, user_agent=user_agent)
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
    no longer signs anything in) and the cookie is deleted. 204 for the page's script (Accept:
    application/json), else a redirect to the sign-in page. Nothing to end is not an error."""
    cookie = request.cookies.get(CLINICIAN_COOKIE)
    if cookie:
        async with rt.unit_of_work() as uow:
            await signin.end(uow, rt, cookie, "signed-out")
    response: Response = (
        Response(status_code=204) if _wants_json(request) else RedirectResponse("/", status_code=303)
    )
    response.delete_cookie(
        CLINICIAN_COOKIE, path="/", httponly=True, samesite="lax", secure=request.url.scheme == "https"
    )
    return response
